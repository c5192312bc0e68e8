"""Watching a child process end without a thread or a child watcher: a pidfd on the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess


def exit_future(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    """A future that resolves once ``proc`` has exited, and reaps it then."""
    exited: asyncio.Future[None] = loop.create_future()
    pidfd = os.pidfd_open(proc.pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        proc.wait()
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    return exited
