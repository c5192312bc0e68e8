"""schemathesis against a running service: every answer as its OpenAPI document says.

Every operation is called with generated requests, valid and not: no status, content
type or header the document does not give, no body that breaks its schema, no server
error, 401 without the token, 405 with the right Allow header.  One check is left out:
`positive_data_acceptance` expects every request the schema allows to succeed, but some
rules are the deployment's, not the schema's (a timeout above the configured ceiling, a
domain outside NETWORK_ALLOWED_DOMAINS, a URL scheme); those answer 422, documented.
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
        "--request-timeout",
        "90",
        "--no-color",
        "--report-dir",
        str(report_dir),
        *more,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-4000:]
    summary = run.stdout.split("SUMMARY")[-1]
    assert " passed" in summary and "failures" not in summary, summary
