"""The contract between the controller and a runner: one job in, one outcome out.

Typed records only (standard library); runner.wire is their JSON form, with a strict
decoder for each direction.  Every placement speaks it: the local backend hands a ``Job``
to a sandbox of this host, ``python -m runner`` reads one from stdin, a file or one HTTP
request (the runner image), and the pod backend sends one to a runner pod.

The defaults here are the product's defaults: the controller's settings take theirs
from these records, so the two cannot disagree.  Limits are split by when they apply:
``SandboxLimits`` are fixed when a sandbox is mounted (a warm sandbox already has them),
``RunLimits`` apply to the one run inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox_common.domains import DomainPolicy

MIB = 1024 * 1024
WIRE_VERSION = 1
MAX_TIMEOUT_MS = 120_000

# Caps on what a runner may report, whatever its limits say: it is untrusted.
MAX_VIOLATIONS = 32
MAX_VIOLATION_CHARS = 300
MAX_SKIPPED = 1000
MAX_PATH_CHARS = 1024
MAX_REASON_CHARS = 40
MAX_ERROR_CHARS = 500
MAX_RESULTS = 100
"""Representations a run may return (an object displayed gives one per MIME type)."""
MAX_SKIPPED_RESULTS = MAX_RESULTS + 1
"""Those it may list as not returned: as many, and one for events dropped past its caps."""
RESULT_TYPES = frozenset(
    {
        "text/plain",
        "text/html",
        "text/markdown",
        "text/latex",
        "application/json",
        "image/png",
        "image/svg+xml",
    }
)
"""The MIME types a result may have (runner.display makes them, runner.results checks)."""
FIGURE_TYPES = ("image/png", "image/svg+xml")
"""What matplotlib figures may be returned as."""


@dataclass(frozen=True)
class SandboxLimits:
    """Fixed when the sandbox is mounted: the sizes of its in-memory filesystems."""

    workspace_bytes: int = 128 * MIB
    tmp_bytes: int = 64 * MIB
    """Each of /tmp and /dev/shm."""


@dataclass(frozen=True)
class RunLimits:
    """Applied to the one run inside a mounted sandbox; every field is kernel-enforced."""

    timeout_ms: int = 10_000
    memory_bytes: int = 1024 * MIB
    max_processes: int = 64
    max_file_bytes: int = 64 * MIB
    max_open_files: int = 256
    output_bytes: int = 1 * MIB
    """Captured bytes per stream (stdout, stderr); the rest is discarded."""
    results_bytes: int = 4 * MIB
    """The rich results' data together (runner.display); what does not fit is reported."""

    def rlimits(self) -> dict[str, int]:
        """The rlimits the stub applies to the code's process, in the stub's names."""
        return {
            "memoryBytes": self.memory_bytes,
            "maxProcesses": self.max_processes,
            "maxFileBytes": self.max_file_bytes,
            "maxOpenFiles": self.max_open_files,
            # A CPU-time backstop past the wall clock: a busy loop that somehow outlived
            # the supervisor's kill would still be stopped by the kernel.
            "cpuSeconds": self.timeout_ms // 1000 + 2,
        }


@dataclass(frozen=True)
class HarvestLimits:
    """How much of what the code wrote is collected after the run."""

    max_files: int = 50
    max_file_bytes: int = 10 * MIB
    max_total_bytes: int = 25 * MIB


@dataclass(frozen=True)
class InputFile:
    path: str
    """Relative to the workspace, checked by runner.policy.input_path_refusal."""
    content: bytes


@dataclass(frozen=True)
class Job:
    """One execution: what to run, with what, under which limits."""

    execution_id: str
    code: str
    stdin: str | None = None
    files: tuple[InputFile, ...] = ()
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    limits: RunLimits = field(default_factory=RunLimits)
    harvest: HarvestLimits | None = None
    """None: collect nothing the code wrote."""
    network: DomainPolicy | None = None
    """The names the code may reach through the egress proxy; None: no network at all
    (the sandbox has a loopback of its own and nothing else)."""
    egress: EgressGrant | None = None
    """How a runner pod reaches the egress proxy for this job (Kubernetes placement:
    the proxy holds the policy, signed into the grant; ``network`` stays None there)."""
    figures: tuple[str, ...] = ("image/png",)
    """What matplotlib figures are returned as (FIGURE_TYPES)."""

    @property
    def reaches_proxy(self) -> bool:
        """Whether the code may reach any name, through whichever proxy serves it."""
        return self.network is not None or self.egress is not None


@dataclass(frozen=True)
class EgressGrant:
    proxy: str
    """``address:port`` of the egress proxy (an address: a runner pod has no DNS)."""
    token: str
    """The signed grant the proxy checks on every connection (Proxy-Authorization)."""
    max_connections: int
    max_bytes: int


@dataclass(frozen=True)
class HarvestedFile:
    path: str
    content: bytes


@dataclass(frozen=True)
class SkippedFile:
    """A file the code wrote that is not returned, and why (e.g. ``too_large``)."""

    path: str
    reason: str
    size: int | None


@dataclass(frozen=True)
class Harvested:
    files: tuple[HarvestedFile, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    error: str | None = None
    """Why the files could not be collected at all."""


@dataclass(frozen=True)
class Denial:
    """An operation of the code that the sandbox denied, as the in-sandbox hook saw it."""

    kind: str
    """``filesystem`` or ``network`` (anything else is reported as ``other``)."""
    target: str
    detail: str


@dataclass(frozen=True)
class RichResult:
    """One representation of an object the code displayed (runner.display)."""

    type: str
    """A MIME type of RESULT_TYPES."""
    data: str
    """Text; base64 for an image other than SVG; the JSON text for application/json."""
    display: int
    """Which displayed object it represents (0, 1, ...): one object, many types."""


@dataclass(frozen=True)
class SkippedResult:
    """A representation that is not returned, and why: ``too_large`` (over the run's
    results budget), ``invalid`` (not what its type says) or ``too_many``."""

    type: str | None
    display: int | None
    size: int | None
    reason: str


@dataclass(frozen=True)
class OutputChunk:
    """Output as it was read from the sandbox (within the stream's cap)."""

    stream: str
    """``stdout`` or ``stderr``."""
    data: bytes
    at: float
    """When it was read: milliseconds since the epoch."""


Event = OutputChunk | RichResult | Denial
"""What a run reports while it runs, in the order it happened."""
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, as seen from outside the sandbox."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: float
    cpu_user_ms: float | None = None
    cpu_system_ms: float | None = None
    max_rss_kb: int | None = None
    denials: tuple[Denial, ...] = ()
    status_missing: bool = False
    """The stub never reported: the code killed or broke its own supervisor process."""
    setup_error: str | None = None
    """The job could not be set up (its input files could not be written)."""
    memory_limit_hit: bool = False
    """The kernel killed a process of the execution at the memory limit of the whole
    execution (its cgroup: a runner pod's limit), not just one process's address space."""
    process_limit_hit: bool = False
    """The task limit of the whole execution (its cgroup's pids.max) refused a fork."""
    harvested: Harvested = field(default_factory=Harvested)
    network: NetworkUsage | None = None
    """What went through the egress proxy (filled in by the placement that runs it)."""
    results: tuple[RichResult, ...] = ()
    skipped_results: tuple[SkippedResult, ...] = ()


@dataclass(frozen=True)
class NetworkUsage:
    connections: int
    bytes_sent: int
    bytes_received: int


# --- Code contexts (runner.context): a sandbox that serves many calls -----------------


class ContextFailed(Exception):
    """The context's sandbox broke down or broke the protocol: the context is over."""


SERVING_REFUSALS = frozenset({"busy", "bad_call", "bad_setup", "begun", "not_begun"})
"""The ``error`` codes of ``serve --context``'s own refusals (runner.context_serve): any
other code it answers is a file operation's rule (FileRefused)."""


class FileRefused(Exception):
    """A file operation the sandbox refused; ``rule`` names why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule, self.message = rule, message


@dataclass(frozen=True)
class CallOutcome:
    outcome: Outcome
    restarted: bool
    """The interpreter was replaced during the call (its state is lost; files are kept)."""
