"""The limits of one execution, from the settings: the same for every placement."""

from __future__ import annotations

from dataclasses import dataclass

from runner.cgroup import SANDBOX_TASKS, GroupLimits
from runner.contract import MIB, HarvestLimits, RunLimits, SandboxLimits

from controller.errors import InvalidRequest
from controller.settings import Settings


@dataclass(frozen=True)
class SizeRule:
    """A request field's size limit (a setting), its rule's name and its message: the
    body's size check (controller.bodies.shape, before any per-item work) and the
    execution's own (after it, in bytes of UTF-8) both say it in these words."""

    field: str
    most: int
    rule: str
    message: str


def request_size_rules(settings: Settings) -> dict[str, SizeRule]:
    """The /execute body's own size limits, by field."""

    def utf8(field: str, most: int, setting: str) -> SizeRule:
        return SizeRule(
            field, most, "max_bytes", f"at most {most} bytes of UTF-8 (setting {setting})"
        )

    files = settings.max_input_files
    rules = [
        utf8("code", settings.max_code_bytes, "MAX_CODE_BYTES"),
        utf8("stdin", settings.max_stdin_bytes, "MAX_STDIN_BYTES"),
        SizeRule("files", files, "max_items", f"at most {files} files (setting MAX_INPUT_FILES)"),
    ]
    return {rule.field: rule for rule in rules}


def check_code(settings: Settings, code: str, stdin: str | None) -> None:
    """422 for code or stdin over its size (in bytes of UTF-8), or code with a NUL."""
    rules = request_size_rules(settings)
    for rule, value in ((rules["code"], code), (rules["stdin"], stdin)):
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > rule.most:
            raise InvalidRequest(rule.field, rule.rule, rule.message)
    if "\x00" in code:
        raise InvalidRequest("code", "no_nul", "source code cannot contain NUL characters")


def check_input_bytes(settings: Settings, total: int) -> None:
    """422 for input files over MAX_INPUT_BYTES together, decoded."""
    if total > settings.max_input_bytes:
        raise InvalidRequest(
            "files",
            "max_bytes",
            f"at most {settings.max_input_bytes} bytes in all, decoded (setting MAX_INPUT_BYTES)",
        )


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
        results_bytes=settings.results_limit_bytes,
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
