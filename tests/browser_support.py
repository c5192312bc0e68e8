"""Helpers of the browser tests: finding an agent's processes and files."""

from __future__ import annotations

import os
from pathlib import Path


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


def agent_home(directory: Path) -> Path:
    """The HOME every process of the agent of ``directory`` has (its Chromium's private
    directory: controller.browser.process.AgentLayout)."""
    return directory / "chromium"


def agent_dirs(state_dir: str) -> list[Path]:
    root = Path(state_dir) / "browser"
    return sorted(root.glob("ag-*")) if root.exists() else []
