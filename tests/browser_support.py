"""Helpers of the browser tests: polling with a deadline, and finding agent processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float = 15,
    what: str = "condition",
    state: Callable[[], object] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``.

    ``state`` describes what was seen instead, for the failure message.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{seen}")
        time.sleep(0.05)


def agent_pids(state_dir: str) -> set[int]:
    """Every process started for the service's agents: they all have HOME in its state dir."""
    marker = f"HOME={Path(state_dir) / 'browser'}/".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ:
            found.add(int(entry))
    return found


def agent_dirs(state_dir: str) -> list[Path]:
    root = Path(state_dir) / "browser"
    return sorted(root.glob("ag-*")) if root.exists() else []
