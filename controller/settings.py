"""The service's settings: one typed object read from the environment, injected, never global."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from browser_agent import protocol as agent_protocol
from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    SecretStr,
    UrlConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from runner.contract import MAX_TIMEOUT_MS, MIB, HarvestLimits, RunLimits, SandboxLimits
from runner.policy import HOST_ID_RANGE

from controller.budget import default_budget_mb
from controller.pod_scheduling import PodScheduling
from controller.sessions.timeouts import SessionTimeouts
from sandbox_common.addresses import HostPort, parse_host_ports
from sandbox_common.bearer import MIN_TOKEN_CHARS
from sandbox_common.domains import (
    DomainPolicy,
    PatternError,
    parse_internal_hosts,
    parse_patterns,
    parse_ports,
)

# The defaults of the limits are the runner contract's own (one source for both).
RUN = RunLimits()
MOUNT = SandboxLimits()
HARVEST = HarvestLimits()
WEAK_TOKENS = frozenset({"changeme", "change-me", "secret", "token", "password", "test"})
MIN_TOKEN_LENGTH = MIN_TOKEN_CHARS
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|Ki|Mi|Gi)?$"
SECCOMP_PROFILE = "sandbox-controller/runner-seccomp.json"
"""The chart's Localhost seccomp profile (helm/seccomp), for runner and browser pods."""


def from_text(parser: Callable[[str], object]) -> BeforeValidator:
    """A list setting given as text (the environment), parsed by ``parser``, which raises
    ValueError naming the bad entry; anything else is validated as it is."""
    return BeforeValidator(lambda value: parser(value) if isinstance(value, str) else value)


def pattern_list(text: str) -> tuple[str, ...]:
    try:  # refuses `*`, `*.com`, IP literals and bad names, naming the entry
        return tuple(str(p) for p in parse_patterns(text.split(",")))
    except PatternError as exc:
        raise ValueError(str(exc)) from None


RUNNER_OVERHEAD_MB = 128
"""Memory of a runner pod beyond the execution's own: the runner and the sandbox's stub."""


def default_replica_name() -> str:
    """The host's name as a Kubernetes object name (the chart passes the pod's own)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")
    return name[:253] or "controller"


def prepared_env(name: str) -> Path:
    """Where `make` prepares a Python environment (SANDBOX_ENV, BROWSER_ENV there)."""
    if os.geteuid() == 0:
        return Path("/var/lib/sandbox-controller") / name
    return Path(".state", name).resolve()


def prepared_interpreter(name: str, otherwise: str) -> str:
    """The prepared environment's interpreter when it exists, else ``otherwise``."""
    prepared = prepared_env(name) / "bin" / "python3"
    return str(prepared) if prepared.exists() else otherwise


class BrowserSessionRules(BaseSettings):
    """The rules of browser sessions that the controller and the operator both apply."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    browser_namespace: str = Field(
        "sandbox-browsers",
        pattern=DNS_LABEL,
        description="Namespace of the BrowserSessions and their pods (BACKEND=kubernetes; "
        "the chart creates it, with its quota and NetworkPolicies).",
    )
    browser_pool_owner: str = Field(
        "browser-pool",
        pattern=DNS_LABEL,
        description="The ConfigMap (the chart's, in BROWSER_NAMESPACE) that owns the warm "
        "browser pods and holds the pool's state for the controllers.",
    )
    browser_warm_agents: int = Field(
        1,
        ge=0,
        le=64,
        description="Browser agents (Chromium already running) kept ready for new sessions "
        "(on Kubernetes: warm browser pods, kept by the operator).",
    )
    browser_idle_timeout_s: int = Field(
        300, ge=1, le=86_400, description="A session unused this long is closed (default)."
    )
    browser_max_idle_timeout_s: int = Field(
        3600, ge=1, le=86_400, description="Largest `idleTimeoutS` a request may ask for."
    )
    browser_session_lifetime_s: int = Field(
        1800, ge=1, le=86_400, description="A session is closed this long after its creation."
    )
    browser_max_session_lifetime_s: int = Field(
        7200, ge=1, le=86_400, description="Largest `maxLifetimeS` a request may ask for."
    )
    browser_allow_private_networks: bool = Field(
        False,
        description="Let browsers reach loopback, private and link-local addresses. "
        "The controller's own port stays unreachable even then.",
    )
    browser_chromium_sandbox: bool = Field(
        True,
        description="Keep Chromium's own sandbox (needs unprivileged user namespaces); "
        "turn off only where they are unavailable.  Agents never run as root.",
    )

    browser_memory_mb: int = Field(
        1024,
        ge=256,
        description="Memory of one browser: a browser pod's request and limit; locally, "
        "each agent's cgroup limit (agent, driver and Chromium together) and what it, "
        "warm or in a session, counts against MEMORY_BUDGET_MB.",
    )

    @property
    def browser_timeouts(self) -> SessionTimeouts:
        return SessionTimeouts(
            self.browser_idle_timeout_s,
            self.browser_max_idle_timeout_s,
            self.browser_session_lifetime_s,
            self.browser_max_session_lifetime_s,
            "BROWSER_MAX_IDLE_TIMEOUT_S",
            "BROWSER_MAX_SESSION_LIFETIME_S",
        )


class SandboxNamespaceRules(BaseSettings):
    """Where runner pods and CodeContexts live: what the controller and the operator share."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kubernetes_namespace: str = Field(
        "sandbox-runners",
        pattern=DNS_LABEL,
        description="Namespace of the runner pods and of the CodeContexts (the chart "
        "creates it, with its quota and NetworkPolicies).",
    )
    context_pool_owner: str = Field(
        "context-pool",
        pattern=DNS_LABEL,
        description="The ConfigMap (the chart's, in KUBERNETES_NAMESPACE) that owns the "
        "warm context pods; the controller publishes on it how they are made.",
    )


class NetworkRules(BaseSettings):
    """Network by name (docs/network.md): what the controller and the egress proxy both read."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    network_allowed_domains: Annotated[tuple[str, ...], NoDecode, from_text(pattern_list)] = Field(
        (),
        description="Comma-separated names the code may reach through the egress proxy: "
        "exact (`api.github.com`) or wildcards (`*.github.com`: the names under it). Empty: "
        "no network at all. A request's `network.allowedDomains` may only narrow it.",
    )
    network_denied_domains: Annotated[tuple[str, ...], NoDecode, from_text(pattern_list)] = Field(
        (), description="Names never reached, whatever is allowed (deny wins)."
    )
    network_allowed_ports: Annotated[frozenset[int], NoDecode, from_text(parse_ports)] = Field(
        frozenset({80, 443}), description="Comma-separated ports the proxy connects to."
    )
    network_internal_hosts: Annotated[dict[str, str], NoDecode, from_text(parse_internal_hosts)] = (
        Field(
            {},
            description="Comma-separated `name=address` pairs (like curl's --resolve): the only "
            "way an allowed name may lead to a loopback or private address (an internal "
            "mirror). Every other name must resolve to public addresses only.",
        )
    )
    network_max_connections: int = Field(
        64, ge=1, le=100_000, description="Connections through the proxy per execution."
    )
    network_max_mb: int = Field(
        256, ge=1, le=1_000_000, description="MiB through the proxy per execution, both ways."
    )
    network_ask_url: (
        Annotated[AnyHttpUrl, UrlConstraints(allowed_schemes=["http", "https"])] | None
    ) = Field(
        None,
        description="The operator's webhook for names neither allowed nor denied: it gets "
        'POST {executionId, host, port, labels} and answers {"allow": true|false}; a '
        "timeout or an error denies. Asked once per name and execution.",
    )
    network_ask_timeout_ms: int = Field(
        2000, ge=10, le=30_000, description="How long the proxy waits for the ask-callback."
    )
    egress_grant_key: SecretStr | None = Field(
        None,
        description="Key the controller signs each execution's egress grant with and the "
        "egress proxy checks it with (BACKEND=kubernetes; the chart generates it).",
    )
    egress_proxy: str = Field(
        "",
        description="host:port of the egress proxy's Service (BACKEND=kubernetes; the chart "
        "sets it); runner pods are given its address, since they have no DNS.",
    )
    egress_proxy_port: int = Field(
        3128, ge=1, le=65535, description="Port the egress proxy listens on (its own process)."
    )

    @cached_property
    def network_ceiling(self) -> DomainPolicy:
        """What any execution may reach at most (nothing, unless domains are allowed)."""
        return DomainPolicy(
            parse_patterns(self.network_allowed_domains),
            parse_patterns(self.network_denied_domains),
            self.network_allowed_ports,
            ask_unlisted=self.network_ask_url is not None,
        )


class Settings(BrowserSessionRules, SandboxNamespaceRules, NetworkRules):
    """Every knob of the service.  Environment variable names are the field names, upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- serving -------------------------------------------------------------------------
    auth_token: SecretStr = Field(
        description="Bearer token every caller must present (except on /health). Required: "
        f"the service refuses to start without one, or with one shorter than {MIN_TOKEN_LENGTH} "
        "characters or a well-known placeholder."
    )
    auth_keys_file: Path | None = Field(
        None,
        description="A YAML file of named keys, each the hex SHA-256 of a caller's token "
        "with its own limits (docs/operations.md#keys); read again when it changes. "
        "AUTH_TOKEN stays valid as the key named `default`.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    backend: Literal["local", "kubernetes"] = Field(
        "local",
        description="Where executions run: `local` (bubblewrap sandboxes on this host) or "
        "`kubernetes` (one runner pod per execution, docs/kubernetes.md).",
    )
    access_log: bool = Field(
        True, description="Log one line per request: method, path, status, time (no query)."
    )
    shutdown_grace_s: int = Field(
        30,
        ge=0,
        le=3600,
        description="On SIGTERM the service admits nothing new (503 with Retry-After) and "
        "lets the requests in flight finish for up to this long; then it kills what still "
        "runs and exits (the chart's terminationGracePeriodSeconds is this plus a margin).",
    )
    max_connections: int = Field(
        1024,
        ge=16,
        le=1_000_000,
        description="Open connections at most (never more than half the descriptor limit, "
        "which the service raises to its hard limit at start); one more drops the "
        "connection that has waited longest for its request.",
    )
    max_requests_per_key: int = Field(
        128,
        ge=1,
        le=1_000_000,
        description="Requests of one key in flight at once, from their head until their "
        "answer is sent; beyond it, 429. Keep it well below MAX_CONNECTIONS, so that no key "
        "can hold every connection with bodies it trickles or answers it never reads.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A request's head must arrive within this long of its connection (or of "
        "the previous answer on a kept-alive one); else the connection is dropped.",
    )
    keep_alive_s: int = Field(
        5, ge=1, le=600, description="An idle kept-alive connection is closed after this long."
    )
    write_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="An answer its client stops reading for this long in all (however "
        "many times it reads a little) is dropped with its connection.",
    )
    stalled_answers_mb: int = Field(
        64,
        ge=1,
        description="What the answers that clients are not reading may hold at once; beyond "
        "it, the longest stalled are dropped.",
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without the bearer token (a scrape from inside a "
        "private network); by default it needs the token like the API.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per event; json: one JSON object per line, "
        "with the request id (`requestId`) on every line written for a request.",
    )
    api_docs: bool = Field(
        True,
        description="Serve the API's description without a token: /openapi.json, and "
        "/docs and /redoc to read it; false: none of them.",
    )
    state_dir: Path = Field(
        Path("/var/lib/sandbox-controller") if os.geteuid() == 0 else Path(".state"),
        description="Directory for the service's own files (the sandbox support files).",
    )

    # --- admission -----------------------------------------------------------------------
    max_concurrent_executions: int = Field(
        4, ge=1, le=256, description="Executions running at once; more wait in the queue."
    )
    max_queued_executions: int = Field(
        32, ge=0, le=10_000, description="Executions waiting for a slot; beyond it, 429."
    )
    warm_sandboxes: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Sandboxes started ahead of requests (each used once). "
        "Default: the number of concurrent executions.",
    )
    warm_sandbox_max_age_s: int = Field(
        600,
        ge=1,
        le=86_400,
        description="A warm sandbox unused for this long is replaced "
        "(it was started with the settings and environment of its time).",
    )

    # --- request limits ------------------------------------------------------------------
    max_request_bytes: int = Field(
        16 * MIB, ge=1024, description="Largest accepted request body (413 beyond)."
    )
    request_bodies_mb: int = Field(
        64,
        ge=1,
        description="Request bodies held at once, from their first byte until their answer "
        "is sent (what is parsed from them lives as long); one caller at most half of it, "
        "bodies over 64 KiB at most seven eighths (the rest is for small ones). Beyond it, "
        "429 with Retry-After.",
    )
    request_body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A request's whole body must arrive within this long of its head (408).",
    )
    max_code_bytes: int = Field(
        1 * MIB, ge=1, description="Largest accepted `code` (422 beyond), in UTF-8 bytes."
    )
    max_stdin_bytes: int = Field(
        1 * MIB, ge=0, description="Largest accepted `stdin` (422 beyond), in UTF-8 bytes."
    )
    parse_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Processes that validate request bodies over 64 KiB, so that no body "
        "holds up the event loop; each caller has one body there at a time, in turn.",
    )
    parse_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="A body that takes longer to validate is refused (422 too_complex).",
    )
    parse_memory_mb: int = Field(
        1024,
        ge=256,
        description="Address space of each body parser process; a body that needs more is "
        "refused (422 too_complex).",
    )
    default_timeout_ms: int = Field(
        RUN.timeout_ms,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="`timeoutMs` when a request gives none.",
    )

    # --- sandbox limits (per execution) --------------------------------------------------
    memory_limit_mb: int = Field(
        RUN.memory_bytes // MIB,
        ge=32,
        description="Memory of the whole execution: every process and the in-memory "
        "workspace and /tmp together (a cgroup per execution locally, the pod's limit on "
        "Kubernetes); each process's address space too (RLIMIT_AS).",
    )
    max_processes: int = Field(
        RUN.max_processes,
        ge=1,
        description="Processes and threads of the execution (its cgroup's pids.max, "
        "and RLIMIT_NPROC).",
    )
    cpu_limit_cores: float | None = Field(
        1.0,
        ge=0.01,  # the kernel refuses a quota below 1 ms per 100 ms period
        description="CPU quota of one execution, in cores (a cgroup per execution, local "
        "placement); unset for none beyond the fair share.",
    )
    cpu_idle_after_ms: int = Field(
        20,
        ge=0,
        description="An execution this far into its run moves to the idle CPU class: "
        "fresh executions come first, it has the CPU they leave (local placement; 0: "
        "never).",
    )
    memory_budget_mb: int | None = Field(
        None,
        ge=64,
        description="Local placement: what running executions (MEMORY_LIMIT_MB each), warm "
        "sandboxes (their measured size) and browsers (BROWSER_MEMORY_MB each) may hold "
        "together; beyond it executions queue, then 429, and browser sessions are refused "
        "(429). Default: 75% of the host's memory, or of the service's own cgroup limit.",
    )
    sandbox_cgroups: Literal["auto", "required"] = Field(
        "auto",
        description="auto: a cgroup per execution when the service can make them, else "
        "per-process limits only, said in /health and the start-up log; required: the "
        "sandbox self-test fails without them (local placement).",
    )
    max_file_size_mb: int = Field(
        RUN.max_file_bytes // MIB, ge=1, description="Largest file written (RLIMIT_FSIZE)."
    )
    max_open_files: int = Field(
        RUN.max_open_files, ge=16, description="Open descriptors (RLIMIT_NOFILE)."
    )
    workspace_size_mb: int = Field(
        MOUNT.workspace_bytes // MIB, ge=1, description="Size of the workspace tmpfs."
    )
    tmp_size_mb: int = Field(
        MOUNT.tmp_bytes // MIB, ge=1, description="Size of the private /tmp tmpfs."
    )
    output_limit_bytes: int = Field(
        RUN.output_bytes,
        ge=1024,
        description="Captured bytes per stream; the rest is discarded and "
        "the stream is flagged in `truncated`.",
    )
    results_limit_bytes: int = Field(
        RUN.results_bytes,
        ge=1024,
        le=64 * MIB,
        description="Rich results of one execution or call together (displayed values, "
        "figures); what does not fit is listed in `skippedResults`.",
    )

    # --- sandbox placement ---------------------------------------------------------------
    sandbox_python: str | None = Field(
        None,
        description="Interpreter the sandboxed code runs with. Default: the sandbox "
        "environment that `make run` prepares (numpy, pandas, matplotlib) when it exists, "
        "else /usr/bin/python3. A virtual environment's root is mounted read-only.",
    )
    sandbox_extra_ro_paths: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated host paths mounted read-only at the same place "
        "(e.g. a Python environment for the sandbox).",
    )
    sandbox_preload: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated modules imported while each sandbox warms up (e.g. "
        "numpy,pandas,matplotlib.pyplot), so the code's imports of them cost nothing. Each "
        "warm sandbox then starts slower and holds them in memory.",
    )
    sandbox_uid: int = Field(
        63000,
        ge=1,
        description="First host uid of the sandboxes when the service runs as root: each "
        "sandbox gets its own from the 1000 uids from here, leased host-wide, so that no "
        "execution shares the kernel's per-user counters with another. Ignored otherwise: "
        "sandboxes run as the service's uid.",
    )
    sandbox_gid: int = Field(63000, ge=1, description="First host gid, as sandbox_uid.")

    # --- Kubernetes placement (BACKEND=kubernetes) ----------------------------------------
    runner_image: str = Field(
        "localhost/sandbox-runner:latest", min_length=1, description="Image of runner pods."
    )
    runner_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of runner pods."
    )
    runner_seccomp_profile: str = Field(
        SECCOMP_PROFILE,
        min_length=1,
        description="Localhost seccomp profile of runner pods, relative to the kubelet's "
        "seccomp directory (helm/seccomp/runner-seccomp.json must be installed there).",
    )
    runner_cpu_request: str = Field("100m", pattern=QUANTITY, description="CPU request.")
    runner_cpu_limit: str = Field("1", pattern=QUANTITY, description="CPU limit of a pod.")
    runner_memory_request_mb: int = Field(128, ge=16, description="Memory request of a pod.")
    runner_memory_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Memory limit of a whole runner pod: every process of the execution "
        "and its in-memory workspace, /tmp and /dev/shm together. Default: "
        "MEMORY_LIMIT_MB (the whole execution, as a local cgroup) + 128 for the runner.",
    )
    runner_ephemeral_storage_mb: int = Field(
        256, ge=16, description="Ephemeral-storage limit of a pod (its logs and support files)."
    )
    runner_pod_start_timeout_s: float = Field(
        60, gt=0, le=600, description="How long a runner pod may take to become ready."
    )
    runner_pod_scheduling: PodScheduling = Field(
        default=PodScheduling(),
        description="Where runner pods run, as JSON: nodeSelector, tolerations, "
        "priorityClassName, runtimeClassName (gVisor, Kata), imagePullSecrets. The chart "
        "renders it from runner.* and imagePullSecrets, and its admission policy admits "
        "exactly these.",
    )
    runner_user_namespace: bool = Field(
        True,
        description="Runner pods get a user namespace of their own (hostUsers: false) and "
        "an unmasked /proc, which bubblewrap needs inside them. false only under a "
        "RuntimeClass that gives every pod a kernel of its own and no pod user namespaces "
        "(gVisor): RUNNER_POD_SCHEDULING must then name it.",
    )
    replica_name: str = Field(
        default_factory=lambda: default_replica_name(),
        pattern=DNS_SUBDOMAIN,
        description="This controller replica's name (the chart gives its pod's name): the "
        "owner label of its runner pods and the name of its lease.",
    )
    browser_session_start_timeout_s: float = Field(
        60,
        gt=0,
        le=600,
        description="How long creating a browser session may take on Kubernetes (a pod "
        "and a Chromium start when no warm pod is ready) before it is a 503.",
    )
    replica_lease_s: int = Field(
        15,
        ge=5,
        le=300,
        description="A replica renews its lease every third of this; the runner pods of a "
        "replica whose lease is this much overdue are removed by any replica's sweep.",
    )

    # --- files in and out ---------------------------------------------------------------
    max_input_files: int = Field(100, ge=0, description="Files accepted in `files`.")
    max_input_bytes: int = Field(
        10 * MIB, ge=0, description="Total decoded size of the files in `files`."
    )
    max_output_files: int = Field(
        HARVEST.max_files, ge=0, description="Files collected from the workspace after a run."
    )
    max_output_file_bytes: int = Field(
        HARVEST.max_file_bytes, ge=0, description="Largest file collected; larger ones are skipped."
    )
    max_output_bytes: int = Field(
        HARVEST.max_total_bytes, ge=0, description="Total size of the files collected after a run."
    )
    max_inline_bytes: int = Field(
        8 * MIB,
        ge=0,
        description="Total size of files returned inline (without "
        "fileUploadUrl); the rest are listed in skippedFiles.",
    )
    upload_allowed_hosts: Annotated[frozenset[HostPort], NoDecode, from_text(parse_host_ports)] = (
        Field(
            frozenset(),
            description="Comma-separated host or host:port upload targets. Empty: any "
            "public host. Loopback and private addresses only when listed; link-local and "
            "metadata addresses never.",
        )
    )
    upload_concurrency: int = Field(4, ge=1, le=64, description="Uploads in flight per run.")
    upload_timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of each upload.")

    # --- browser sessions ----------------------------------------------------------------
    browser_executable: str = Field(
        "/usr/bin/chromium", description="Chromium binary the browser agents launch."
    )
    browser_python: str | None = Field(
        None,
        description="Interpreter of the browser agents (local placement), with Playwright "
        "and the agent's packages: run as each browser's own uid when the service is root, "
        "so it must be readable by every user. Default: the environment `make browser-env` "
        "prepares when it exists, else the service's own interpreter.",
    )
    browser_namespaces: bool = Field(
        True,
        description="Run each session's Chromium in namespaces of its own (bubblewrap): no "
        "network but the agent's proxy, the host's files read-only, its profile and cache "
        "on a tmpfs of BROWSER_DISK_MB. Turn off only where unprivileged user namespaces "
        "are unavailable (local placement).",
    )
    browser_disk_mb: int = Field(
        256,
        ge=16,
        description="The tmpfs that holds a session's profile, cache and site data (local "
        "placement, with BROWSER_NAMESPACES); it counts against BROWSER_MEMORY_MB. "
        "Downloads are never kept.",
    )
    max_browser_sessions: int = Field(
        4, ge=0, le=256, description="Browser sessions open at once; beyond it, 429."
    )

    # --- code contexts ----------------------------------------------------------------
    max_contexts: int = Field(
        8,
        ge=0,
        le=1024,
        description="Code contexts open at once; beyond it, 429. Each holds a sandbox, and "
        "MEMORY_LIMIT_MB of MEMORY_BUDGET_MB, for its whole life.",
    )
    context_idle_timeout_s: int = Field(
        600, ge=1, le=86_400, description="A context unused this long is closed (default)."
    )
    context_max_idle_timeout_s: int = Field(
        3600, ge=1, le=86_400, description="Largest `idleTimeoutS` a context may ask for."
    )
    context_lifetime_s: int = Field(
        3600, ge=1, le=604_800, description="A context is closed this long after its creation."
    )
    context_max_lifetime_s: int = Field(
        14_400, ge=1, le=604_800, description="Largest `maxLifetimeS` a context may ask for."
    )
    context_interrupt_grace_ms: int = Field(
        2000,
        ge=10,
        le=60_000,
        description="How long a context call that timed out has to stop after its "
        "KeyboardInterrupt; then the context's interpreter is restarted (its variables "
        "lost, its files kept).",
    )
    max_context_files: int = Field(
        10_000, ge=1, le=100_000, description="Files listed by `GET /contexts/{id}/files`."
    )
    browser_navigation_timeout_ms: int = Field(
        agent_protocol.DEFAULT_NAVIGATION_TIMEOUT_MS,
        ge=1,
        le=agent_protocol.MAX_TIMEOUT_MS,
        description="`timeoutMs` of a navigation that gives none.",
    )
    browser_action_timeout_ms: int = Field(
        agent_protocol.DEFAULT_ACTION_TIMEOUT_MS,
        ge=1,
        le=agent_protocol.MAX_TIMEOUT_MS,
        description="`timeoutMs` of an action that gives none.",
    )
    browser_uid: int = Field(
        64001,
        ge=1,
        description="First host uid of the sessions' Chromium when the service runs as "
        "root: each browser gets its own from the 1000 uids from here, leased host-wide.",
    )
    browser_gid: int = Field(64001, ge=1, description="First host gid, as browser_uid.")

    @field_validator("auth_token")
    @classmethod
    def _refuse_weak_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH or token.lower() in WEAK_TOKENS:
            raise ValueError(
                f"AUTH_TOKEN must be at least {MIN_TOKEN_LENGTH} characters and not a "
                "placeholder; generate one with: openssl rand -hex 32"
            )
        return value

    @field_validator("sandbox_preload", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @field_validator("sandbox_preload")
    @classmethod
    def _module_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"{name!r} is not a module name")
        return value

    @field_validator("sandbox_extra_ro_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @property
    def sandbox_interpreter(self) -> str:
        return self.sandbox_python or prepared_interpreter("sandbox-env", "/usr/bin/python3")

    @property
    def browser_interpreter(self) -> str:
        return self.browser_python or prepared_interpreter("browser-env", sys.executable)

    @property
    def memory_budget(self) -> int:
        """MEMORY_BUDGET_MB, or the default derived from the host (read at start)."""
        if self.memory_budget_mb is not None:
            return self.memory_budget_mb
        return default_budget_mb()

    @model_validator(mode="after")
    def _browser_disk_within_its_memory(self) -> Settings:
        if self.browser_namespaces and self.browser_disk_mb >= self.browser_memory_mb:
            raise ValueError(
                f"BROWSER_DISK_MB ({self.browser_disk_mb}) is a tmpfs counted against "
                f"BROWSER_MEMORY_MB ({self.browser_memory_mb}): it must be smaller"
            )
        return self

    @model_validator(mode="after")
    def _no_user_namespace_only_under_a_runtime_class(self) -> Settings:
        if not self.runner_user_namespace and not self.runner_pod_scheduling.runtimeClassName:
            raise ValueError(
                "RUNNER_USER_NAMESPACE=false needs a runtimeClassName in "
                "RUNNER_POD_SCHEDULING (a runtime with a kernel of its own, such as gVisor): "
                "under the node's kernel, bubblewrap in a pod needs the pod's user namespace"
            )
        return self

    @model_validator(mode="after")
    def _uid_ranges_apart(self) -> Settings:
        for what, sandbox, browser in (
            ("uid", self.sandbox_uid, self.browser_uid),
            ("gid", self.sandbox_gid, self.browser_gid),
        ):
            if abs(sandbox - browser) < HOST_ID_RANGE:
                raise ValueError(
                    f"SANDBOX_{what.upper()} ({sandbox}) and BROWSER_{what.upper()} ({browser}) "
                    f"each start a range of {HOST_ID_RANGE} {what}s: the ranges must not overlap"
                )
        return self

    @model_validator(mode="after")
    def _network_where_the_proxy_runs(self) -> Settings:
        proxy_known = self.egress_grant_key is not None and bool(self.egress_proxy)
        if (
            self.backend == "kubernetes"
            and self.network_ceiling.allows_anything
            and not proxy_known
        ):
            raise ValueError(
                "NETWORK_ALLOWED_DOMAINS with BACKEND=kubernetes needs the egress proxy: "
                "EGRESS_PROXY and EGRESS_GRANT_KEY (the chart sets both)"
            )
        return self

    @model_validator(mode="after")
    def _budget_holds_one_of_each(self) -> Settings:
        if self.backend != "local":
            return self  # the cluster's quotas bound the pods there
        budget, explicit = self.memory_budget, self.memory_budget_mb is not None
        where = "MEMORY_BUDGET_MB" if explicit else "the memory budget (75% of this host's)"
        warm_browsers = self.browser_warm_agents * self.browser_memory_mb
        if budget < self.memory_limit_mb + warm_browsers:
            raise ValueError(
                f"{where}, {budget} MiB, cannot hold one execution (MEMORY_LIMIT_MB "
                f"{self.memory_limit_mb}) beside the warm browsers (BROWSER_WARM_AGENTS x "
                f"BROWSER_MEMORY_MB = {warm_browsers}): lower those or raise MEMORY_BUDGET_MB"
            )
        return self

    @property
    def runner_pod_memory_mb(self) -> int:
        if self.runner_memory_limit_mb is not None:
            return self.runner_memory_limit_mb
        return self.memory_limit_mb + RUNNER_OVERHEAD_MB

    @property
    def context_timeouts(self) -> SessionTimeouts:
        return SessionTimeouts(
            self.context_idle_timeout_s,
            self.context_max_idle_timeout_s,
            self.context_lifetime_s,
            self.context_max_lifetime_s,
            "CONTEXT_MAX_IDLE_TIMEOUT_S",
            "CONTEXT_MAX_LIFETIME_S",
        )

    @property
    def warm_pool_size(self) -> int:
        if self.warm_sandboxes is None:
            return self.max_concurrent_executions
        return self.warm_sandboxes
