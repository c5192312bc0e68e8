"""The limits of one execution, from the settings: the same for every placement."""

from __future__ import annotations

from runner.cgroup import SANDBOX_TASKS, GroupLimits
from runner.contract import MIB, HarvestLimits, RunLimits, SandboxLimits

from controller.settings import Settings


def sandbox_limits(settings: Settings) -> SandboxLimits:
    """What every sandbox is mounted with."""
    return SandboxLimits(
        workspace_bytes=settings.workspace_size_mb * MIB, tmp_bytes=settings.tmp_size_mb * MIB
    )


def run_limits(settings: Settings, timeout_ms: int) -> RunLimits:
    """The limits of one run: the settings, with the request's timeout."""
    return RunLimits(
        timeout_ms=timeout_ms,
        memory_bytes=settings.memory_limit_mb * MIB,
        max_processes=settings.max_processes,
        max_file_bytes=settings.max_file_size_mb * MIB,
        max_open_files=settings.max_open_files,
        output_bytes=settings.output_limit_bytes,
    )


def harvest_limits(settings: Settings) -> HarvestLimits:
    return HarvestLimits(
        max_files=settings.max_output_files,
        max_file_bytes=settings.max_output_file_bytes,
        max_total_bytes=settings.max_output_bytes,
    )


def group_limits(settings: Settings) -> GroupLimits:
    """The cgroup of one sandbox: the whole execution's memory, tasks and CPU (quota and
    when it turns idle)."""
    return GroupLimits(
        memory_bytes=settings.memory_limit_mb * MIB,
        max_tasks=settings.max_processes + SANDBOX_TASKS,
        cpu_cores=settings.cpu_limit_cores,
        cpu_idle_after_ms=settings.cpu_idle_after_ms or None,
    )
