"""schemathesis against a running service: every answer as its OpenAPI document says.

Every operation is called with generated requests, valid and not: no status, content
type or header the document does not give, no body that breaks its schema, no server
error, 401 without the token, 405 with the right Allow header.  One check is left out:
`positive_data_acceptance` expects every request the schema allows to succeed, but some
rules are the deployment's, not the schema's (a timeout above the configured ceiling, a
domain outside NETWORK_ALLOWED_DOMAINS, a URL scheme); those answer 422, documented.

No session is opened: generated calls on a real one max out their timeouts (up to 120 s
each, on selectors that never appear), which would make this run take many minutes.
So every call on a session answers 404 here; what a session answers is parsed by the
models the document is made from (controller.browser.client.reply_model), and the
browser tests check it with real Chromium.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ST = Path(sys.executable).with_name("st")
SEED = "20261206"
"""The same requests every run: a failure is reproducible with `st run --seed`."""


def conformance(base_url: str, token: str, report_dir: Path, max_examples: int, *more: str) -> None:
    """Run schemathesis; fail the test with its report if anything does not conform."""
    command = [
        str(ST),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(max_examples),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--exclude-operation-id",
        "create_session_browser_sessions_post",
        "--request-timeout",
        "150",
        "--max-response-time",
        "130",
        "--no-color",
        "--report-dir",
        str(report_dir),
        *more,
    ]
    # In the report directory: schemathesis keeps a cache of its own where it runs.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=report_dir
    )
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-4000:]
    summary = run.stdout.split("SUMMARY")[-1]
    assert " passed" in summary and "failures" not in summary, summary
