"""``python -m runner``: run one job read as JSON on stdin, print the outcome as JSON.

The runner image's entry point (one execution per pod) and a way to try the sandbox by
hand.  The job: ``{"code": str, "stdin": str?, "timeoutMs": int?, "files": [{"path",
"content"(base64)}]?}``; limits come from the defaults of runner.policy.Limits.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from runner.launch import sandbox_command
from runner.policy import HIDDEN_PATHS, Limits
from runner.protocol import HarvestLimits
from runner.supervisor import SandboxError
from runner.support import prepare_support_dir

SANDBOX_HOST_ID = 64000


async def run_job(job: dict[str, Any], python: str) -> dict[str, Any]:
    limits = Limits(timeout_ms=int(job.get("timeoutMs", Limits.timeout_ms)))
    harvest = HarvestLimits(max_files=50, max_file_bytes=10 << 20, max_total_bytes=25 << 20)
    support = prepare_support_dir(tempfile.mkdtemp(prefix="runner-support-"), python)
    command = sandbox_command(support, python, limits, host_ids=(SANDBOX_HOST_ID, SANDBOX_HOST_ID))
    sandbox = command.start()
    try:
        await sandbox.wait_ready(30)
        files = [(f["path"], base64.b64decode(f["content"])) for f in job.get("files", [])]
        payload = {
            "code": job["code"],
            "stdin": job.get("stdin"),
            "files": files,
            "hiddenPaths": list(HIDDEN_PATHS),
            "visiblePaths": list(command.visible_paths),
        }
        outcome = await sandbox.run(payload, limits, harvest)
    finally:
        await sandbox.close()
        shutil.rmtree(support, ignore_errors=True)
    result = dataclasses.asdict(outcome)
    result["stdout"] = outcome.stdout.decode("utf-8", "replace")
    result["stderr"] = outcome.stderr.decode("utf-8", "replace")
    result["harvested"]["files"] = [
        {"path": f.path, "content": base64.b64encode(f.content).decode()}
        for f in outcome.harvested.files
    ]
    return result


def main() -> None:
    try:
        job = json.load(sys.stdin)
        if not isinstance(job, dict) or not isinstance(job.get("code"), str):
            raise ValueError("a JSON object with a string 'code' is required")
        python = os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3")
        result = asyncio.run(run_job(job, python))
    except (ValueError, KeyError, TypeError) as exc:
        print(json.dumps({"error": f"bad job: {exc}"}))
        sys.exit(2)
    except SandboxError as exc:
        print(json.dumps({"error": f"sandbox failed: {exc}"}))
        sys.exit(3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
