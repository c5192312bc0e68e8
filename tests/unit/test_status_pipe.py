"""The stub's status pipe read from outside, against what a tampering sandbox could write.

The code runs as the same uid as the stub, so every byte on the pipe may be hostile:
each case writes it into a real pipe and checks that the supervisor's reader bounds and
refuses it, never trusting what the sandbox claims about its own limits.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from runner.contract import Harvested, HarvestLimits
from runner.protocol import MAX_STATUS_BYTES, StatusReader, denials_from

LIMITS = HarvestLimits(max_files=2, max_file_bytes=10, max_total_bytes=15)
STATUS = json.dumps({"exitCode": 0, "signal": None, "timedOut": False}).encode()


async def read(data: bytes, limits: HarvestLimits | None = LIMITS) -> StatusReader:
    """Write ``data`` into a pipe, close it, and let a StatusReader read all of it."""
    read_end, write_end = os.pipe()
    reader = StatusReader(asyncio.get_running_loop(), read_end)
    reader.limits = limits

    def write_all() -> None:  # blocking, as the stub writes: more than a pipe holds
        try:
            with open(write_end, "wb") as pipe:
                pipe.write(data)
        except BrokenPipeError:
            pass  # the reader stopped reading: what it refused need not arrive

    writer = asyncio.create_task(asyncio.to_thread(write_all))
    await asyncio.wait_for(asyncio.shield(reader.harvest), 5)
    await writer
    return reader


def manifest(files: list[object], skipped: list[object] | None = None) -> bytes:
    return json.dumps({"files": files, "skipped": skipped or []}).encode()


async def test_an_honest_report_is_read_whole() -> None:
    body = manifest([{"path": "a", "size": 3}, {"path": "b/c", "size": 2}])
    reader = await read(b"ready\n" + STATUS + b"\n" + body + b"\nabcde")
    assert reader.ready.result() is True
    assert reader.status.result() == {"exitCode": 0, "signal": None, "timedOut": False}
    harvested = reader.harvest.result()
    assert [(f.path, f.content) for f in harvested.files] == [("a", b"abc"), ("b/c", b"de")]
    assert harvested.error is None


async def test_anything_but_ready_first_is_not_ready() -> None:
    reader = await read(b"steady\n" + STATUS + b"\n")
    assert reader.ready.result() is False


async def test_a_status_that_is_not_a_json_object_is_no_status() -> None:
    for junk in (b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        reader = await read(b"ready\n" + junk + b"\n")
        assert reader.status.result() is None
        assert reader.harvest.result() == Harvested()


async def test_a_status_line_without_end_is_cut_off() -> None:
    reader = await read(b"ready\n" + b"x" * (MAX_STATUS_BYTES + 10))
    assert reader.status.result() is None
    assert reader.harvest.result().error == "status line too long"


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "a", "size": 1}] * 3,  # more files than max_files
        [{"path": "a", "size": 11}],  # one file over max_file_bytes
        [{"path": "a", "size": 8}, {"path": "b", "size": 8}],  # total over max_total_bytes
        [{"path": "a", "size": -1}],
        [{"path": "a", "size": "1"}],
        [{"path": "a", "size": True}],
        [{"path": 7, "size": 1}],
        ["a"],
        "not a list",
    ],
)
async def test_a_manifest_beyond_the_limits_is_refused_whole(files: object) -> None:
    data = json.dumps({"files": files, "skipped": []}).encode()
    reader = await read(b"ready\n" + STATUS + b"\n" + data + b"\n" + b"z" * 40)
    harvested = reader.harvest.result()
    assert harvested.files == ()
    assert harvested.error == "the sandbox sent a file list beyond its limits"
    assert reader.status.result() is not None, "the run's status still stands"


async def test_no_limits_means_no_files_whatever_the_sandbox_sends() -> None:
    body = manifest([{"path": "a", "size": 1}])
    reader = await read(b"ready\n" + STATUS + b"\n" + body + b"\nz", limits=None)
    assert reader.harvest.result().error is not None


async def test_fewer_bytes_than_announced_is_an_error_not_a_short_file() -> None:
    body = manifest([{"path": "a", "size": 10}])
    reader = await read(b"ready\n" + STATUS + b"\n" + body + b"\nshort")
    harvested = reader.harvest.result()
    assert harvested.files == ()
    assert harvested.error == "the sandbox ended before sending its files"


async def test_a_truncated_report_still_yields_the_status() -> None:
    reader = await read(b"ready\n" + STATUS + b"\n")
    assert reader.status.result() is not None
    assert reader.harvest.result().error == "the sandbox ended before sending its files"


async def test_skipped_entries_are_sanitized_and_capped() -> None:
    skipped = [{"path": "p" * 5000, "reason": "r" * 500, "size": "big"}, "junk", 7] + [
        {"path": f"f{i}", "reason": "too_large", "size": i} for i in range(2000)
    ]
    reader = await read(b"ready\n" + STATUS + b"\n" + manifest([], skipped) + b"\n")
    kept = reader.harvest.result().skipped
    assert len(kept) < 1001
    assert len(kept[0].path) == 1024 and len(kept[0].reason) == 40 and kept[0].size is None
    assert kept[1].path == "f0" and kept[1].size == 0


def test_denials_from_inside_are_parsed_warily() -> None:
    lines: list[object] = [
        json.dumps({"kind": "network", "target": "x" * 1000, "detail": "d"}),
        "{not json",
        7,
        json.dumps(["not", "an", "object"]),
        "y" * 5000,
    ] + [json.dumps({"kind": "filesystem", "target": str(i), "detail": ""}) for i in range(50)]
    found = denials_from(lines)
    assert found[0].kind == "network" and len(found[0].target) == 300
    assert len(found) <= 32
    assert denials_from("not a list") == ()
