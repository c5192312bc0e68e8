"""Host-wide uid leases (controller.uids): one sandbox or browser a uid, whatever service."""

from __future__ import annotations

from pathlib import Path

from controller.uids import UidLeases


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
