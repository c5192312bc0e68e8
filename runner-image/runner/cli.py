"""``python -m runner``: run one job of the wire contract (runner.wire) in a fresh sandbox.

    python -m runner [--job FILE]      the job from FILE (or stdin), the result on stdout
    python -m runner serve --port N    warm a sandbox, then take the job from one HTTP
                                       request (the runner image in a pod; runner.serve)

The result is one JSON document: the outcome, or a failure (exit status 2 for a job that
breaks the contract, 3 when the sandbox itself failed).  Every field of the job is
honoured: its sandbox limits mount the sandbox, its run limits bound the run, its
harvest limits bound the files collected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from runner.cgroup import oom_kills
from runner.contract import EventSink, Job, Outcome, SandboxLimits
from runner.launch import READY_TIMEOUT_S, SETUP_ERRORS, RunnerOptions
from runner.policy import DEFAULT_HOST_ID
from runner.supervisor import Sandbox, SandboxError
from runner.support import prepare_support_dir
from runner.wire import Failure, WireError, decode_job, encode_failure, encode_outcome

EXIT_BAD_JOB = 2
EXIT_SANDBOX_FAILED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--python",
        default=os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3"),
        help="interpreter inside the sandbox (default: $SANDBOX_PYTHON or /usr/bin/python3)",
    )
    parser.add_argument(
        "--sandbox-ids",
        default=f"{DEFAULT_HOST_ID}:{DEFAULT_HOST_ID}",
        help="UID:GID the sandbox is launched as when this runs as root",
    )
    parser.add_argument("--preload", default="", help="comma-separated modules to warm up")
    parser.add_argument("--extra-ro-paths", default="", help="comma-separated read-only paths")
    parser.add_argument(
        "--support-dir",
        default=os.environ.get("RUNNER_SUPPORT_DIR"),
        help="a support directory prepared ahead with `prepare` (default: $RUNNER_SUPPORT_DIR; "
        "without one, each run prepares its own)",
    )
    parser.add_argument("--job", default="-", help="file with the job; - is stdin")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="warm a sandbox, take the job from one HTTP request")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the pod's own address
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--token-sha256-env",
        default="RUNNER_TOKEN_SHA256",
        help="environment variable holding the hex SHA-256 of the token POST /run needs",
    )
    serve.add_argument("--workspace-bytes", type=int, default=SandboxLimits.workspace_bytes)
    serve.add_argument("--tmp-bytes", type=int, default=SandboxLimits.tmp_bytes)
    serve.add_argument(
        "--max-idle-s", type=float, default=600.0, help="exit when no job came this long"
    )
    serve.add_argument(
        "--egress",
        action="store_true",
        help="mount an egress directory in the sandbox: the job may then reach names "
        "through the egress proxy its grant names (runner.egress)",
    )
    serve.add_argument(
        "--context",
        action="store_true",
        help="serve one code context (runner.context_serve) instead of one job",
    )
    prepare = sub.add_parser("prepare", help="prepare a support directory ahead (an image build)")
    prepare.add_argument("directory")
    return parser.parse_args(argv)


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def options_from(args: argparse.Namespace) -> RunnerOptions:
    uid, _, gid = str(args.sandbox_ids).partition(":")
    return RunnerOptions(
        python=args.python,
        host_ids=(int(uid), int(gid or uid)),
        preload=_split(args.preload),
        extra_ro_paths=_split(args.extra_ro_paths),
        support_dir=args.support_dir,
        egress=bool(getattr(args, "egress", False)),
    )


async def run_counting_oom_kills(
    sandbox: Sandbox, job: Job, events: EventSink | None = None
) -> Outcome:
    """Run ``job``, noting whether this process's memory cgroup (a pod's) killed part of it."""
    before = oom_kills()
    outcome = await sandbox.run(job, events)
    after = oom_kills()
    if before is not None and after is not None and after > before:
        outcome = replace(outcome, memory_limit_hit=True)
    return outcome


async def run_once(options: RunnerOptions, job: Job) -> bytes:
    try:
        command, made = await asyncio.to_thread(options.prepare, job.sandbox)
    except SETUP_ERRORS as exc:
        raise SandboxError(f"cannot prepare the sandbox: {exc}") from exc
    try:
        sandbox = command.start()
        try:
            await sandbox.wait_ready(READY_TIMEOUT_S)
            outcome = await run_counting_oom_kills(sandbox, job)
        finally:
            await sandbox.close()
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return encode_outcome(job.execution_id, outcome)


def _print(document: bytes) -> None:
    sys.stdout.buffer.write(document + b"\n")
    sys.stdout.buffer.flush()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = options_from(args)
    if args.command == "serve":
        from runner.serve import ServeOptions, serve

        serving = ServeOptions.from_args(args)
        if args.context:
            from runner.context_serve import serve_context

            sys.exit(asyncio.run(serve_context(options, serving)))
        sys.exit(asyncio.run(serve(options, serving)))
    if args.command == "prepare":
        print(prepare_support_dir(args.directory, options.python))
        return
    try:
        raw = sys.stdin.buffer.read() if args.job == "-" else Path(args.job).read_bytes()
        job = decode_job(raw)
    except (WireError, OSError) as exc:
        _print(encode_failure("", Failure("bad_job", str(exc))))
        sys.exit(EXIT_BAD_JOB)
    try:
        result = asyncio.run(run_once(options, job))
    except SandboxError as exc:
        _print(encode_failure(job.execution_id, Failure("sandbox_failed", str(exc))))
        sys.exit(EXIT_SANDBOX_FAILED)
    _print(result)
