"""``python -m runner``, the runner image's entry point, run as the image runs it.

Run by the system interpreter with only what the image copies on the path (the runner
package and sandbox_common, laid out as in runner-image/Dockerfile): it proves the
runner needs nothing beyond the standard library.  Jobs and results cross in the wire
contract (runner.wire), decoded here as the controller decodes them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from runner.contract import (
    MIB,
    HarvestLimits,
    InputFile,
    Job,
    Outcome,
    OutputChunk,
    RunLimits,
    SandboxLimits,
)
from runner.wire import Failure, decode_event, decode_result, encode_job, streamed_parts

from tests.support import ROOT, free_port, traversable_tempdir, wait_for

SANDBOX_PYTHON = os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3")


@pytest.fixture(scope="module")
def image_path() -> Iterator[str]:
    """A directory holding exactly what the runner image puts on PYTHONPATH."""
    root = traversable_tempdir("runner-image-path-")
    shutil.copytree(ROOT / "runner-image" / "runner", Path(root) / "runner")
    shutil.copytree(ROOT / "sandbox_common", Path(root) / "sandbox_common")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def runner_env(image_path: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": image_path,
        "SANDBOX_PYTHON": SANDBOX_PYTHON,
        **extra,
    }


def run(image_path: str, document: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/usr/bin/python3", "-m", "runner"],
        input=document,
        capture_output=True,
        timeout=60,
        cwd="/",
        env=runner_env(image_path),
        check=False,
    )


def outcome_of(image_path: str, job: Job) -> Outcome:
    done = run(image_path, encode_job(job))
    assert done.returncode == 0, done.stdout + done.stderr
    result = decode_result(done.stdout, job)
    assert isinstance(result, Outcome), result
    return result


def job(code: str, **changes: object) -> Job:
    base = Job(
        execution_id="ex-cli",
        code=code,
        limits=RunLimits(timeout_ms=10_000),
        harvest=HarvestLimits(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_one_job_with_files_in_and_out(image_path: str) -> None:
    outcome = outcome_of(
        image_path,
        job(
            "print(open('in.txt').read().upper()); open('out.txt', 'w').write('o')",
            files=(InputFile("in.txt", b"hi"),),
        ),
    )
    assert outcome.exit_code == 0
    assert outcome.stdout == b"HI\n"
    assert [(f.path, f.content) for f in outcome.harvested.files] == [("out.txt", b"o")]
    assert outcome.harvested.skipped == ()
    assert outcome.harvested.error is None


def test_timeout_and_isolation(image_path: str) -> None:
    code = "import socket, time\nprint(len(socket.if_nameindex()), flush=True)\ntime.sleep(10)"
    outcome = outcome_of(image_path, job(code, limits=RunLimits(timeout_ms=300)))
    assert outcome.timed_out is True
    assert outcome.stdout == b"1\n"


def test_every_limit_of_the_job_is_honoured(image_path: str) -> None:
    code = (
        "import os\n"
        "print('x' * 5000)\n"
        "for name in ('a', 'b', 'c'): open(name, 'w').write(name)\n"
        "try:\n    bytearray(300 << 20)\nexcept MemoryError:\n    print('no memory')\n"
        "try:\n    open('big', 'wb').write(b'z' * (3 << 20))\nexcept OSError as e:\n"
        "    print('workspace', e.errno)\n"
    )
    outcome = outcome_of(
        image_path,
        job(
            code,
            sandbox=SandboxLimits(workspace_bytes=2 * MIB, tmp_bytes=1 * MIB),
            limits=RunLimits(timeout_ms=10_000, memory_bytes=200 * MIB, output_bytes=6000),
            harvest=HarvestLimits(max_files=2, max_file_bytes=1 * MIB, max_total_bytes=2 * MIB),
        ),
    )
    lines = outcome.stdout.decode().splitlines()
    assert lines[0] == "x" * 5000
    assert "no memory" in lines  # memory_bytes
    assert "workspace 28" in lines  # ENOSPC: workspace_bytes
    assert [f.path for f in outcome.harvested.files] == ["a", "b"]  # max_files
    assert {s.path: s.reason for s in outcome.harvested.skipped}["c"] == "too_many_files"

    capped = outcome_of(image_path, job("print('y' * 5000)", limits=RunLimits(output_bytes=100)))
    assert capped.stdout == b"y" * 100
    assert capped.stdout_truncated is True


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (b"[]", "document"),
        (b"{not json", "document"),
        (b'{"version": 2}', "version"),
        (encode_job(job("1")).replace(b'"code"', b'"cod"'), "cod"),
    ],
)
def test_a_bad_job_is_reported(image_path: str, document: bytes, field: str) -> None:
    done = run(image_path, document)
    assert done.returncode == 2, done.stderr
    result = decode_result(done.stdout, replace(job("1"), execution_id=""))
    assert isinstance(result, Failure)
    assert result.code == "bad_job"
    assert result.message.startswith(field)


class ServedRunner:
    """``python -m runner serve`` on a loopback port, as a runner pod runs it."""

    def __init__(
        self,
        image_path: str,
        token: str,
        *,
        max_idle_s: float = 60,
        egress: bool = False,
        context: bool = False,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        digest = hashlib.sha256(token.encode()).hexdigest()
        argv = ["/usr/bin/python3", "-m", "runner", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--max-idle-s", str(max_idle_s)]
        argv += ["--egress"] if egress else []
        argv += ["--context"] if context else []
        self.proc = subprocess.Popen(
            argv,
            cwd="/",
            env=runner_env(image_path, RUNNER_TOKEN_SHA256=digest),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> int | None:
        try:
            return httpx.get(self.url + "/ready", timeout=2).status_code
        except httpx.TransportError:
            assert self.proc.poll() is None, self.proc.communicate(timeout=10)[0]
            return None

    def post(self, body: bytes, token: str) -> httpx.Response:
        return httpx.post(
            self.url + "/run",
            content=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def served(image_path: str) -> Iterator[tuple[ServedRunner, str]]:
    token = secrets.token_urlsafe(24)
    runner = ServedRunner(image_path, token)
    wait_for(runner.ready, timeout_s=30, what="the runner to listen")
    yield runner, token
    runner.close()


def test_served_runner_takes_exactly_one_job_then_exits(served: tuple[ServedRunner, str]) -> None:
    runner, token = served
    assert runner.ready() == 200
    the_job = job("print(6 * 7)")

    assert runner.post(encode_job(the_job), "wrong-" + token).status_code == 401
    answer = runner.post(encode_job(the_job), token)

    assert answer.status_code == 200, answer.text
    events, last = streamed_parts(answer.content)
    chunks = [decode_event(line, the_job) for line in events]
    assert [(c.stream, c.data) for c in chunks if isinstance(c, OutputChunk)] == [
        ("stdout", b"42\n")
    ]
    result = decode_result(last, the_job)
    assert isinstance(result, Outcome)
    assert result.stdout == b"42\n"
    assert runner.proc.wait(10) == 0  # one job, then the runner (and its pod) ends


def test_served_runner_refuses_bad_jobs_and_stays_usable(
    served: tuple[ServedRunner, str],
) -> None:
    runner, token = served
    assert runner.post(b'{"version": 1}', token).status_code == 422
    other_mount = job("1", sandbox=SandboxLimits(workspace_bytes=1 * MIB))
    refused = runner.post(encode_job(other_mount), token)
    assert refused.status_code == 422
    assert "mounted with" in refused.json()["failure"]["message"]

    the_job = job("print('still here')")
    answer = runner.post(encode_job(the_job), token)
    result = decode_result(streamed_parts(answer.content)[1], the_job)
    assert isinstance(result, Outcome)
    assert result.stdout == b"still here\n"


def test_served_runner_exits_when_no_job_comes(image_path: str) -> None:
    runner = ServedRunner(image_path, secrets.token_urlsafe(24), max_idle_s=1)
    try:
        assert runner.proc.wait(40) == 0
    finally:
        runner.close()
