"""The stub's status pipe, read from outside: ``ready``, a status line, a file manifest, bytes.

Everything on it was written inside the sandbox, where the code could have tampered
with it, so each part is bounded and checked against limits known here, never against
what the sandbox claims: a manifest over the limits is refused whole.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from runner.contract import (
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    MAX_SKIPPED,
    MAX_VIOLATION_CHARS,
    MAX_VIOLATIONS,
    Denial,
    Harvested,
    HarvestedFile,
    HarvestLimits,
    SkippedFile,
)

MAX_STATUS_BYTES = 512 * 1024
READ_CHUNK = 1 << 16
NOTHING = HarvestLimits(0, 0, 0)


class PipeReader:
    """A non-blocking pipe read from the event loop; ``on_data`` gets each chunk, b"" at EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop, self._fd = loop, fd
        os.set_blocking(fd, False)
        loop.add_reader(fd, self.read_once)

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def read_once(self) -> bool:
        """Read one chunk; False when nothing more is available right now (or at EOF)."""
        if self._fd < 0:
            return False
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
        self.on_data(data)
        return bool(data)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def detach(self) -> int:
        """Stop reading and hand the descriptor over (-1 if it is closed)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._loop.remove_reader(fd)
        return fd


class StatusReader(PipeReader):
    """Reads the stub's status pipe: ``ready``, a status line, a manifest line, file bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._buffer = bytearray()
        self._manifest: list[tuple[str, int]] = []
        self._skipped: tuple[SkippedFile, ...] = ()
        self._expected = 0
        self._manifest_ready = False
        self.limits: HarvestLimits | None = None
        self.ready: asyncio.Future[bool] = loop.create_future()
        self.status: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self.harvest: asyncio.Future[Harvested] = loop.create_future()
        super().__init__(loop, fd)

    def on_data(self, data: bytes) -> None:
        if not data:
            self._finish(None, Harvested(error="the sandbox ended before sending its files"))
            return
        self._buffer += data
        while not self.harvest.done():
            if self._manifest_ready:
                if len(self._buffer) >= self._expected:
                    self._finish_files()
                return
            if b"\n" not in self._buffer:
                if len(self._buffer) > MAX_STATUS_BYTES:
                    self._finish(None, Harvested(error="status line too long"))
                return
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            if not self.ready.done():
                self.ready.set_result(line == b"ready")
            elif not self.status.done():
                status = parse_status(line)
                self.status.set_result(status)
                if status is None or "setupError" in status:
                    self._finish(status, Harvested())
            else:
                self._read_manifest(line)

    def _read_manifest(self, line: bytes) -> None:
        manifest = parse_status(line) or {}
        files, skipped = manifest.get("files"), manifest.get("skipped")
        limits = self.limits or NOTHING
        entries: list[tuple[str, int]] = []
        if isinstance(files, list):
            for item in files:
                path = item.get("path") if isinstance(item, dict) else None
                size = int_or_none(item.get("size")) if isinstance(item, dict) else None
                if isinstance(path, str) and size is not None and size >= 0:
                    entries.append((path[:MAX_PATH_CHARS], size))
        total = sum(size for _, size in entries)
        if (
            not isinstance(files, list)
            or len(entries) != len(files)
            or len(entries) > limits.max_files
            or total > limits.max_total_bytes
            or any(size > limits.max_file_bytes for _, size in entries)
        ):
            self._finish(
                self.status.result(),
                Harvested(error="the sandbox sent a file list beyond its limits"),
            )
            return
        self._manifest, self._expected, self._manifest_ready = entries, total, True
        self._skipped = tuple(
            SkippedFile(
                path=str(s.get("path", ""))[:MAX_PATH_CHARS],
                reason=str(s.get("reason", ""))[:MAX_REASON_CHARS],
                size=int_or_none(s.get("size")),
            )
            for s in (skipped if isinstance(skipped, list) else [])[:MAX_SKIPPED]
            if isinstance(s, dict)
        )

    def _finish_files(self) -> None:
        data = bytes(self._buffer[: self._expected])
        files, offset = [], 0
        for path, size in self._manifest:
            files.append(HarvestedFile(path, data[offset : offset + size]))
            offset += size
        self._finish(self.status.result(), Harvested(files=tuple(files), skipped=self._skipped))

    def _finish(self, status: dict[str, Any] | None, harvested: Harvested) -> None:
        if not self.ready.done():
            self.ready.set_result(False)
        if not self.status.done():
            self.status.set_result(status)
        if not self.harvest.done():
            self.harvest.set_result(harvested)
        self.close()


def parse_status(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # deep nesting: written to exhaust the parser
        return None
    return value if isinstance(value, dict) else None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def float_or_none(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def denials_from(value: object) -> tuple[Denial, ...]:
    """The child's violation records: JSON strings written from inside, so parsed warily."""
    if not isinstance(value, list):
        return ()
    found = []
    for line in value[:MAX_VIOLATIONS]:
        try:
            item = json.loads(line) if isinstance(line, str) and len(line) < 4096 else None
        except ValueError:
            continue
        denial = denial_of(item)
        if denial is not None:
            found.append(denial)
    return tuple(found)


def denial_of(item: object) -> Denial | None:
    """A violation record (a JSON object written inside), as a Denial; None if it is none."""
    if not isinstance(item, dict):
        return None
    return Denial(
        *(text_of(str(item.get(k, ""))[:MAX_VIOLATION_CHARS]) for k in ("kind", "target", "detail"))
    )


def text_of(value: str) -> str:
    """``value`` as text every encoder takes: a lone surrogate (JSON's ``\\ud800`` decodes to
    one, and UTF-8 cannot hold it) becomes U+FFFD, as invalid output bytes do."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value
