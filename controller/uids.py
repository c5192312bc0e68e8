"""Host-wide leases on the uids that sandboxes and browsers run as: a lock file per uid.

Every service on the host (and every test run) draws from the same ranges, so a uid is
leased with an exclusive ``flock`` on its own lock file, held for as long as what runs as
it lives.  The kernel drops the lock when the holder dies, even on SIGKILL, so a lease
can never leak; and no two live sandboxes or browsers, of any service, ever share a uid.
That exclusivity is what makes "kill every process of this uid" a safe way to end a
session, and what keeps the kernel's per-user counters (inotify instances and watches,
processes, pending signals, message queues) one sandbox's alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from runner.policy import HOST_ID_RANGE

log = logging.getLogger(__name__)

LOCK_ROOT = Path("/run/sandbox-controller")
UID_COUNT = HOST_ID_RANGE
RETRY_S = 5.0
QUARANTINE_S = 600.0


@dataclass(frozen=True)
class Lease:
    uid: int
    gid: int
    fd: int


class UidLeases:
    """Leases on ``first_uid`` ... ``first_uid + count - 1`` (gids alongside)."""

    def __init__(
        self,
        kind: str,
        first_uid: int,
        first_gid: int,
        count: int = UID_COUNT,
        lock_root: Path = LOCK_ROOT,
    ) -> None:
        """``kind``: whose uids these are (``browser``, ``sandbox``): their locks' directory."""
        self.kind = kind
        self.first_uid, self.first_gid, self.count = first_uid, first_gid, count
        self.lock_dir = lock_root / f"{kind}-uids"
        self._made = False

    def acquire(self) -> Lease | None:
        """The lowest free uid, leased; None when every uid of the range is in use."""
        if not self._made:  # once: this is on the way to every sandbox's start
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made = True
        for offset in range(self.count):
            uid = self.first_uid + offset
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Lease(uid=uid, gid=self.first_gid + offset, fd=fd)
        return None

    @staticmethod
    def release(lease: Lease) -> None:
        """Give the uid back: only once nothing runs as it any more."""
        os.close(lease.fd)


class Quarantine:
    """Leases of uids that processes may still run as: each released only once its sandbox
    or agent says nothing of it is left, never before, so that no uid is handed on with a
    predecessor's processes (and their share of the per-user counters) still on it."""

    def __init__(self, retry_s: float = RETRY_S, give_up_s: float = QUARANTINE_S) -> None:
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> int:
        """Leases waiting for their processes to be gone."""
        return len(self._tasks)

    def hold(self, lease: Lease, gone: Callable[[], Awaitable[bool]], what: str) -> None:
        """Keep ``lease`` until ``gone()`` (which kills what is left, and says whether
        nothing is) is true: asked every ``retry_s`` for ``give_up_s``, then never again,
        and the uid stays leased while the service runs."""
        log.warning("%s left processes behind: uid %d is kept until they are gone", what, lease.uid)
        task = asyncio.create_task(self._release_when_gone(lease, gone, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_when_gone(
        self, lease: Lease, gone: Callable[[], Awaitable[bool]], what: str
    ) -> None:
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.retry_s)
            try:
                if await gone():
                    UidLeases.release(lease)
                    log.info("%s: its processes are gone, uid %d is free", what, lease.uid)
                    return
            except Exception:  # a failed try is tried again
                log.exception("%s: cannot tell whether its processes are gone", what)
        log.error(
            "%s: processes still left after %.0f s; uid %d stays leased while the service runs",
            what,
            self.give_up_s,
            lease.uid,
        )

    async def stop(self) -> None:
        """Stop asking (the leases are dropped with the process: the kernel's)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
