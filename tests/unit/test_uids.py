"""Host-wide uid leases (controller.uids): one sandbox or browser a uid, whatever service."""

from __future__ import annotations

from pathlib import Path

from controller.uids import Quarantine, UidLeases
from tests.support import until


def test_uid_leases_are_exclusive_until_released(tmp_path: Path) -> None:
    leases = UidLeases("browser", 64001, 64101, count=2, lock_root=tmp_path)
    other_service = UidLeases("browser", 64001, 64101, count=2, lock_root=tmp_path)
    first = leases.acquire()
    second = other_service.acquire()
    assert first is not None and second is not None
    assert (first.uid, first.gid, second.uid, second.gid) == (64001, 64101, 64002, 64102)
    assert leases.acquire() is None  # the range is used up, whoever holds it
    UidLeases.release(first)
    again = other_service.acquire()
    assert again is not None and again.uid == 64001
    UidLeases.release(again)
    UidLeases.release(second)


async def test_a_uid_with_processes_left_is_kept_until_they_are_gone(tmp_path: Path) -> None:
    leases = UidLeases("sandbox", 63001, 63001, count=2, lock_root=tmp_path)
    first = leases.acquire()
    assert first is not None
    answers = [False, False, True]  # what the sandbox's close says each time it is asked

    async def gone() -> bool:
        return answers.pop(0)

    quarantine = Quarantine(retry_s=0.01)
    quarantine.hold(first, gone, "a sandbox")
    second = leases.acquire()
    assert second is not None and second.uid == 63002  # never the uid still in use
    assert leases.acquire() is None
    await until(lambda: quarantine.held == 0, what="the quarantined lease released")
    assert answers == []  # released only when its processes were gone
    again = leases.acquire()
    assert again is not None and again.uid == 63001
    for lease in (second, again):
        UidLeases.release(lease)


async def test_a_uid_whose_processes_never_go_stays_leased(tmp_path: Path) -> None:
    leases = UidLeases("sandbox", 63001, 63001, count=1, lock_root=tmp_path)
    lease = leases.acquire()
    assert lease is not None
    asked = 0

    async def never() -> bool:
        nonlocal asked
        asked += 1
        return False

    quarantine = Quarantine(retry_s=0.01, give_up_s=0.1)
    quarantine.hold(lease, never, "a sandbox")
    await until(lambda: quarantine.held == 0, what="the quarantine given up")
    assert asked >= 2
    assert leases.acquire() is None  # kept while the service runs
    UidLeases.release(lease)
