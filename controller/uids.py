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

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from runner.policy import HOST_ID_RANGE

LOCK_ROOT = Path("/run/sandbox-controller")
UID_COUNT = HOST_ID_RANGE


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
