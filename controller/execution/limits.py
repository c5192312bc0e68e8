"""The limits of one execution, from the settings: the same for every placement."""

from __future__ import annotations

from runner.policy import Limits

from controller.settings import MIB, Settings


def sandbox_limits(settings: Settings, timeout_ms: int) -> Limits:
    """The limits of one execution: the settings, with the request's timeout."""
    return Limits(
        timeout_ms=timeout_ms,
        memory_bytes=settings.memory_limit_mb * MIB,
        max_processes=settings.max_processes,
        max_file_bytes=settings.max_file_size_mb * MIB,
        max_open_files=settings.max_open_files,
        workspace_bytes=settings.workspace_size_mb * MIB,
        tmp_bytes=settings.tmp_size_mb * MIB,
        output_bytes=settings.output_limit_bytes,
    )
