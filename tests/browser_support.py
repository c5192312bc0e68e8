"""Helpers of the browser tests: finding an agent's processes and files."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import ServiceProcess, wait_for


def settled(svc: ServiceProcess, warm: int) -> None:
    """Wait until the service's warm pool holds ``warm`` ready agents: a session's start
    sets a replacement going, and an agent still starting is in the middle of being made
    (its cgroup without its limit, its launcher still root), not in the state to test."""
    wait_for(
        lambda: svc.client.get("/browser/sessions").json()["warmAgents"] == warm,
        timeout_s=40,
        what=f"{warm} warm browser agent(s)",
    )


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
