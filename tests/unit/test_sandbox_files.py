"""Collecting the workspace: run here on a temporary directory with hostile contents."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from runner.policy import PROTECTED_NAMES
from runner.sandbox_files import Harvest, write_inputs


def harvest(root: Path, inputs: object = None, **limits: int) -> Harvest:
    h = Harvest(
        limits.get("files", 10),
        limits.get("file_bytes", 1000),
        limits.get("total", 5000),
        PROTECTED_NAMES,
    )
    h.collect(str(root), inputs or {})  # type: ignore[arg-type]
    return h


def test_inputs_are_written_and_unchanged_ones_are_not_collected(tmp_path: Path) -> None:
    inputs = write_inputs(str(tmp_path), [("a/b.txt", b"one"), ("c.txt", b"two")], PROTECTED_NAMES)
    assert (tmp_path / "a/b.txt").read_bytes() == b"one"
    (tmp_path / "c.txt").write_bytes(b"changed")
    h = harvest(tmp_path, inputs)
    assert h.files == [{"path": "c.txt", "size": 7}]
    assert h.chunks == [b"changed"]


@pytest.mark.parametrize("path", ["/abs", "../x", "a/../b", "", "a//b", ".env", "secrets/x"])
def test_unsafe_input_paths_are_refused_here_too(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError):
        write_inputs(str(tmp_path), [(path, b"")], PROTECTED_NAMES)


def test_links_and_special_files_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    os.symlink(outside / "secret", tmp_path / "file-link")
    os.symlink(outside, tmp_path / "dir-link")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        (tmp_path / "ok.txt").write_text("ok")
        h = harvest(tmp_path)
    assert [f["path"] for f in h.files] == ["ok.txt"]
    assert {s["path"]: s["reason"] for s in h.skipped} == {
        "dir-link": "symlink",
        "file-link": "symlink",
        "fifo": "not_regular",
        "sock": "not_regular",
    }
    assert b"secret" not in b"".join(h.chunks)


def test_limits(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 1001)
    for i in range(4):
        (tmp_path / f"f{i}").write_bytes(b"y" * 400)
    h = harvest(tmp_path, files=2, file_bytes=1000, total=5000)
    assert [f["path"] for f in h.files] == ["f0", "f1"]
    reasons = {s["path"]: s["reason"] for s in h.skipped}
    assert reasons == {"big": "too_large", "f2": "too_many_files", "f3": "too_many_files"}
    h = harvest(tmp_path, files=10, file_bytes=1000, total=900)
    assert [f["path"] for f in h.files] == ["f0", "f1"]
    assert {s["path"]: s["reason"] for s in h.skipped}["f2"] == "total_limit"


def test_deep_trees_are_cut(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(20)])
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("x")
    h = harvest(tmp_path)
    assert h.files == []
    assert h.skipped[0]["reason"] == "too_deep"


def test_placeholders_are_not_output(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "x").write_text("x")
    assert harvest(tmp_path).files == []


def test_support_etc_holds_copies_and_synthetic_identity(tmp_path: Path) -> None:
    from runner.support import prepare_support_dir

    root = Path(
        prepare_support_dir(
            tmp_path / "support",
            "/usr/bin/python3",
            etc_files=("/etc/ssl/certs", "/etc/localtime", "/etc/nope"),
        )
    )
    etc = root / "etc"
    assert sorted(p.name for p in etc.iterdir()) == ["group", "hosts", "localtime", "passwd", "ssl"]
    assert "sandbox:x:1000:1000" in (etc / "passwd").read_text()
    assert "root:x:0:0" in (etc / "passwd").read_text()
    assert not (etc / "shadow").exists()
    assert (root / "sandbox" / "stub.pyc").is_file()
    assert (root / "sandbox" / "_sandbox_files.pyc").is_file()
