"""Inside the sandbox: write the job's input files, then collect the files the code wrote.

Runs as the sandbox's own unprivileged user, in the sandbox's own mount namespace, so
even a hostile workspace (symlinks to elsewhere, FIFOs, devices, huge or countless
files) can only show it what the code could read anyway.  It still refuses to follow
links or to block on special files: every directory and file is opened relative to its
parent's descriptor with O_NOFOLLOW, and a file is read only after fstat says regular.
Standard library only; imported by the stub before the job arrives.
"""

from __future__ import annotations

import os
import stat

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_ENTRIES = 10_000
MAX_DEPTH = 16

Signature = tuple[int, int, int, int]
Inputs = dict[str, tuple[Signature, bytes]]


def signature(st: os.stat_result) -> Signature:
    """Changes with any write: ctime cannot be set back by the code."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def write_inputs(root: str, files: list[tuple[str, bytes]], protected: frozenset[str]) -> Inputs:
    """Write the inputs and remember how they looked.

    The paths were checked against the policy outside (runner.policy.input_path); this
    refuses, once more, any that would leave the workspace or write a ``protected`` name
    (the workspace's read-only placeholders, ``.env`` and ``secrets``).
    """
    written: Inputs = {}
    for rel, content in files:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or "" in parts or parts[0] in protected:
            raise ValueError(f"refused input path {rel!r}")
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        written[rel] = (signature(os.stat(path, follow_symlinks=False)), content)
    return written


class Harvest:
    """Files found after the run: a manifest, their bytes, and what was skipped and why."""

    def __init__(
        self,
        max_files: int,
        max_file_bytes: int,
        max_total_bytes: int,
        placeholders: frozenset[str],
    ) -> None:
        """``placeholders``: the workspace's protected names, which are not the code's output."""
        self.placeholders = placeholders
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.files: list[dict[str, object]] = []
        self.skipped: list[dict[str, object]] = []
        self.chunks: list[bytes] = []
        self.total = 0
        self.entries = 0

    def skip(self, path: str, reason: str, size: int | None = None) -> None:
        if len(self.skipped) < 2 * self.max_files + 10:
            self.skipped.append({"path": path, "reason": reason, "size": size})

    def collect(self, root: str, inputs: Inputs) -> None:
        fd = os.open(root, O_DIR)
        try:
            self._walk(fd, "", 0, inputs)
        finally:
            os.close(fd)

    def _walk(self, dir_fd: int, prefix: str, depth: int, inputs: Inputs) -> None:
        with os.scandir(dir_fd) as listing:
            entries = sorted(
                (
                    e.name,
                    e.is_symlink(),
                    e.is_dir(follow_symlinks=False),
                    e.is_file(follow_symlinks=False),
                )
                for e in listing
            )
        for name, is_link, is_dir, is_file in entries:
            rel = prefix + name
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                self.skip(prefix or ".", "scan_limit")
                return
            if depth == 0 and name in self.placeholders:
                continue
            if is_link:
                self.skip(rel, "symlink")
            elif is_dir:
                self._enter(dir_fd, name, rel, depth, inputs)
            elif not is_file:
                self.skip(rel, "not_regular")  # FIFO, socket, device: never opened
            else:
                self._take(dir_fd, name, rel, inputs)

    def _enter(self, dir_fd: int, name: str, rel: str, depth: int, inputs: Inputs) -> None:
        if depth + 1 >= MAX_DEPTH:
            self.skip(rel + "/", "too_deep")
            return
        try:
            fd = os.open(name, O_DIR, dir_fd=dir_fd)
        except OSError:
            self.skip(rel + "/", "unreadable")
            return
        try:
            self._walk(fd, rel + "/", depth + 1, inputs)
        finally:
            os.close(fd)

    def _take(self, dir_fd: int, name: str, rel: str, inputs: Inputs) -> None:
        try:
            fd = os.open(name, O_FILE, dir_fd=dir_fd)
        except OSError:
            self.skip(rel, "unreadable")
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skip(rel, "not_regular")
            elif rel in inputs and inputs[rel][0] == signature(st):
                pass  # an input the code did not touch
            elif len(self.files) >= self.max_files:
                self.skip(rel, "too_many_files", st.st_size)
            elif st.st_size > self.max_file_bytes:
                self.skip(rel, "too_large", st.st_size)
            elif self.total + st.st_size > self.max_total_bytes:
                self.skip(rel, "total_limit", st.st_size)
            else:
                self._read(fd, rel, st.st_size, inputs.get(rel, (None, None))[1])
        finally:
            os.close(fd)

    def _read(self, fd: int, rel: str, size: int, original: bytes | None) -> None:
        data = b""
        while len(data) <= size:  # the file may still be growing: never read past its size
            chunk = os.read(fd, size + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) != size:
            self.skip(rel, "changed_while_reading", len(data))
            return
        if data == original:
            return  # an input touched but left with the same content
        self.files.append({"path": rel, "size": size})
        self.chunks.append(data)
        self.total += size
