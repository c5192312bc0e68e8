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


# --- A code context's workspace, operated on between calls (runner.kernel) ---------------


class Refused(Exception):
    """A file operation refused: ``rule`` names why (the controller's error rule)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule, self.message = rule, message


def _parts(rel: str, protected: frozenset[str]) -> list[str]:
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise Refused("relative_path", f"refused path {rel!r}")
    if parts[0] in protected:
        raise Refused("protected", f"{parts[0]} is protected")
    return parts


def _parent(root: str, parts: list[str], create: bool) -> int:
    """The directory holding the path's last part, opened without following a link."""
    fd = os.open(root, O_DIR)
    try:
        for name in parts[:-1]:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                inner = os.open(name, O_DIR, dir_fd=fd)
            except FileNotFoundError:
                raise Refused("not_found", f"no directory {name!r} on the path") from None
            except OSError:
                raise Refused("not_a_directory", f"{name!r} is not a directory") from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_files(
    root: str, placeholders: frozenset[str], max_entries: int, max_bytes: int
) -> tuple[list[object], bool]:
    """The workspace's regular files ``{path, size}`` (links and special files are not
    followed) and whether the list is complete: at most ``max_entries`` of them, and
    about ``max_bytes`` of their paths; a directory that cannot be read makes it
    incomplete too."""
    found: list[object] = []
    pending = [("", os.open(root, O_DIR), 0)]
    budget = max_bytes
    complete = True
    while pending and complete:
        prefix, fd, depth = pending.pop()
        try:
            with os.scandir(fd) as listing:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing)
            for name, is_dir in entries:
                if depth == 0 and name in placeholders:
                    continue
                if is_dir:
                    if depth + 1 >= MAX_DEPTH:
                        complete = False
                        continue
                    try:
                        inner = os.open(name, O_DIR, dir_fd=fd)
                    except OSError:  # out of descriptors, or unreadable: said, not hidden
                        complete = False
                        continue
                    pending.append((prefix + name + "/", inner, depth + 1))
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    path = prefix + name
                    budget -= len(path.encode("utf-8", "surrogateescape")) + 32
                    if len(found) >= max_entries or budget < 0:
                        complete = False
                        break
                    found.append({"path": path, "size": st.st_size})
        except OSError:
            complete = False
        finally:
            os.close(fd)
    for _, fd, _ in pending:
        os.close(fd)
    return found, complete


def read_file(root: str, rel: str, max_bytes: int) -> bytes:
    parts = _parts(rel, frozenset())
    dir_fd = _parent(root, parts, create=False)
    try:
        try:
            fd = os.open(parts[-1], O_FILE, dir_fd=dir_fd)
        except FileNotFoundError:
            raise Refused("not_found", f"no file {rel!r}") from None
        except OSError as exc:
            raise Refused("not_regular", f"{rel!r} cannot be read: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not_regular", f"{rel!r} is not a regular file")
        if st.st_size > max_bytes:
            raise Refused("max_bytes", f"{rel!r} has {st.st_size} bytes; at most {max_bytes}")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise Refused("max_bytes", f"{rel!r} grew past {max_bytes} bytes while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(root: str, rel: str, data: bytes, protected: frozenset[str]) -> None:
    """Create or replace a regular file (its directories made as needed)."""
    parts = _parts(rel, protected)
    dir_fd = _parent(root, parts, create=True)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            raise Refused("not_regular", f"{rel!r} cannot be written: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not_regular", f"{rel!r} is not a regular file")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise Refused("no_space", f"{rel!r} could not be written: {exc.strerror}") from None
    finally:
        os.close(fd)


def delete_path(root: str, rel: str, protected: frozenset[str]) -> None:
    """Remove a file, a link or a whole directory (never what a link points to)."""
    parts = _parts(rel, protected)
    dir_fd = _parent(root, parts, create=False)
    try:
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise Refused("not_found", f"no file {rel!r}") from None
        if stat.S_ISDIR(st.st_mode):
            import shutil  # fd-based on Linux: a link inside is removed, not followed

            shutil.rmtree(parts[-1], dir_fd=dir_fd)
        else:
            os.unlink(parts[-1], dir_fd=dir_fd)
    except OSError as exc:
        raise Refused("not_deleted", f"{rel!r} could not be deleted: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
