"""``python -m runner``, the runner image's entry point, run by the system interpreter.

Run with /usr/bin/python3 and only the runner package on the path: it proves the runner
needs nothing beyond the standard library (the image installs nothing else).
"""

from __future__ import annotations

import base64
import json
import subprocess

from tests.support import ROOT


def run(job: dict[str, object]) -> dict[str, object]:
    done = subprocess.run(
        ["/usr/bin/python3", "-m", "runner"],
        input=json.dumps(job),
        text=True,
        capture_output=True,
        timeout=60,
        cwd=ROOT / "runner-image",
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_one_job_with_files_in_and_out() -> None:
    result = run(
        {
            "code": "print(open('in.txt').read().upper()); open('out.txt', 'w').write('o')",
            "files": [{"path": "in.txt", "content": base64.b64encode(b"hi").decode()}],
            "timeoutMs": 5000,
        }
    )
    assert result["exit_code"] == 0
    assert result["stdout"] == "HI\n"
    assert result["harvested"] == {
        "files": [{"path": "out.txt", "content": "bw=="}],
        "skipped": [],
        "error": None,
    }


def test_timeout_and_isolation() -> None:
    result = run(
        {
            "code": "import socket, time\n"
            "print(len(socket.if_nameindex()), flush=True)\ntime.sleep(10)",
            "timeoutMs": 300,
        }
    )
    assert result["timed_out"] is True
    assert result["stdout"] == "1\n"


def test_a_bad_job_is_reported() -> None:
    done = subprocess.run(
        ["/usr/bin/python3", "-m", "runner"],
        input="[]",
        text=True,
        capture_output=True,
        timeout=60,
        cwd=ROOT / "runner-image",
        check=False,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"].startswith("bad job")
