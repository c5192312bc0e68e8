"""A context's keeper is as untrusted as the code: a hostile one, at the process boundary.

The keeper runs as the code's uid, so the supervisor (runner.context) must hold whatever
it writes to the bounds of the answer asked for.  Each test runs a real process in the
keeper's place, speaking the protocol badly on purpose, behind a stand-in for the
started sandbox (its pipes are real).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from runner.context import MAX_ANSWER_BYTES, ContextSandbox
from runner.contract import ContextFailed, RunLimits

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEEPER = r"""
import os, signal, sys, time
mode, answers = sys.argv[1], int(sys.argv[2])
requests = 0
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

def request():
    head = os.read(requests, 4)
    size = int.from_bytes(head, "big")
    body = b""
    while len(body) < size:
        body += os.read(requests, size - len(body))
    return body

request()  # the setup
os.write(answers, b'{"context": "ready"}\n')
if mode == "flood":  # unasked, between operations: once told that begin() is over
    signal.sigwait({signal.SIGUSR1})
    while True:
        os.write(answers, b"x" * 65536)
if mode == "deep":
    request()
    os.write(answers, b"[" * 200000 + b"\n")
if mode == "long":
    request()
    os.write(answers, b'{"a": "' + b"y" * (2 * 1024 * 1024) + b'"}\n')
if mode == "deaf":  # never reads another request
    time.sleep(60)
"""


class StandIn:
    """What ContextSandbox needs of a started Sandbox, with a real process behind it."""

    view: dict[str, object] = {"workspace": "/workspace"}  # noqa: RUF012
    cgroup = None

    def __init__(self, mode: str) -> None:
        request_r, self.request_w = os.pipe2(os.O_CLOEXEC)
        self.answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        self.stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        self.stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        self.events_r, events_w = os.pipe2(os.O_CLOEXEC)
        self.process = subprocess.Popen(
            [sys.executable, "-c", KEEPER, mode, str(answer_w)],
            stdin=request_r,
            stdout=stdout_w,
            stderr=stderr_w,
            pass_fds=(answer_w,),
        )
        for fd in (request_r, answer_w, stdout_w, stderr_w, events_w):
            os.close(fd)
        self.killed = asyncio.Event()

    def hand_over(self) -> tuple[int, int, int, int, int]:
        return self.request_w, self.stdout_r, self.stderr_r, self.answer_r, self.events_r

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.killed.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for stand_in in made:
        stand_in.kill()


async def opened(mode: str, made: list[StandIn]) -> tuple[ContextSandbox, StandIn]:
    stand_in = StandIn(mode)
    made.append(stand_in)
    context = ContextSandbox(stand_in)  # type: ignore[arg-type]
    await context.begin([], RunLimits(), egress=False)
    return context, stand_in


async def test_bytes_nobody_asked_for_end_the_context_at_once(stand_ins: list[StandIn]) -> None:
    context, keeper = await opened("flood", stand_ins)
    keeper.process.send_signal(signal.SIGUSR1)
    # The flood breaks it as it comes, with no operation under way to notice.
    await asyncio.wait_for(keeper.killed.wait(), 10)
    assert context.failed == "the sandbox wrote while no answer was asked for"
    with pytest.raises(ContextFailed, match="no answer was asked for"):
        await context.restart()
    context.close()


async def test_an_answer_nested_to_exhaust_the_parser_fails_the_context(
    stand_ins: list[StandIn],
) -> None:
    context, keeper = await opened("deep", stand_ins)
    with pytest.raises(ContextFailed, match="not JSON"):
        await context.restart()
    assert keeper.killed.is_set() and context.failed is not None
    context.close()


async def test_an_answer_longer_than_asked_for_is_not_held(stand_ins: list[StandIn]) -> None:
    context, keeper = await opened("long", stand_ins)
    assert MAX_ANSWER_BYTES < 2 * 1024 * 1024
    with pytest.raises(ContextFailed, match="more than its answer may hold"):
        await context.restart()
    assert keeper.killed.is_set()
    context.close()


async def test_closing_during_a_send_that_cannot_finish_leaves_the_loop_sound(
    stand_ins: list[StandIn],
) -> None:
    context, _ = await opened("deaf", stand_ins)
    writing = asyncio.create_task(context.write_file("big.bin", b"z" * (4 * 1024 * 1024)))
    await asyncio.sleep(0.2)  # the pipe is full and the keeper reads nothing
    assert not writing.done()
    context.close()
    with pytest.raises(ContextFailed):
        await writing
    # The descriptor numbers it used are reused at once, and the loop takes them.
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    arrived = asyncio.Event()
    loop.add_writer(write_end, arrived.set)
    loop.add_reader(read_end, arrived.set)
    await asyncio.wait_for(arrived.wait(), 5)
    loop.remove_writer(write_end)
    loop.remove_reader(read_end)
    os.close(read_end)
    os.close(write_end)
