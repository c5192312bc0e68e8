"""The service's Prometheus metrics: what it admitted, ran and refused, and how long it took.

One registry per app (never the process-global one), so two apps in one process, as in
the tests, count apart.  Counters and histograms are written where things happen (the
execute flow, the request middleware); the levels (running, queued, warm, open
sessions, memory held) are read from the services when scraped, so they cannot drift.
Labels are bounded: outcomes and kinds from fixed sets, route templates (never a path
with an id in it), status codes, and key names from the operator's keys file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LEVELS = {
    "sandbox_executions_running": "Executions holding a slot.",
    "sandbox_executions_queued": "Executions waiting for a slot or memory.",
    "sandbox_warm_sandboxes": "Sandboxes started ahead of requests.",
    "sandbox_browser_sessions_open": "Open browser sessions.",
    "sandbox_browser_warm_agents": "Browsers started ahead of sessions.",
    "sandbox_contexts_open": "Open code contexts.",
    "sandbox_memory_budget_mb": "MEMORY_BUDGET_MB (local placement).",
    "sandbox_memory_held_mb": "Memory held by executions, warm sandboxes and browsers.",
    "sandbox_connections_open": "Open HTTP connections (MAX_CONNECTIONS at most).",
}
"""The gauges, read from the services when scraped (controller.app.observe_levels)."""
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Levels(Collector):
    """Gauges read at scrape time: name -> (help, a function giving the value)."""

    def __init__(self) -> None:
        self.readers: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in self.readers.items():
            yield GaugeMetricFamily(name, help_text, value=read())


class Metrics:
    """Every metric of one service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.executions = Counter(
            "sandbox_executions",
            "Executions by outcome (exited, failed, timed_out; or refused: invalid, "
            "overloaded, unavailable) and caller key.",
            ["outcome", "key"],
            registry=r,
        )
        self.queue_seconds = Histogram(
            "sandbox_execution_queue_seconds",
            "Time an execution waited for a slot and its memory.",
            buckets=SECONDS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "sandbox_execution_run_seconds",
            "Time from a slot to the sandbox's result (start, run, harvest).",
            buckets=SECONDS,
            registry=r,
        )
        self.total_seconds = Histogram(
            "sandbox_execution_seconds",
            "Time of the whole execute call, uploads included.",
            buckets=SECONDS,
            registry=r,
        )
        self.violations = Counter(
            "sandbox_violations", "Operations the sandboxes denied, by kind.", ["kind"], registry=r
        )
        self.uploads = Counter(
            "sandbox_uploads",
            "Files uploaded to a caller's file service, by HTTP status or error.",
            ["status"],
            registry=r,
        )
        self.context_calls = Counter(
            "sandbox_context_calls",
            "Calls on code contexts by outcome (exited, failed, timed_out, restarted; or "
            "refused: invalid, busy, gone) and caller key.",
            ["outcome", "key"],
            registry=r,
        )
        self.context_call_seconds = Histogram(
            "sandbox_context_call_seconds",
            "Time of a call on a code context, from the request to its answer.",
            buckets=SECONDS,
            registry=r,
        )
        self.contexts_closed = Counter(
            "sandbox_contexts_closed",
            "Code contexts closed, by why: deleted, expired, failed, stopping.",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "sandbox_http_requests",
            "Requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "sandbox_http_request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=SECONDS,
            registry=r,
        )
        self.browser_operations = Counter(
            "sandbox_browser_operations",
            "Browser-session calls by operation (create, navigate, action, ...) and status.",
            ["operation", "status"],
            registry=r,
        )
        self.connections_dropped = Counter(
            "sandbox_connections_dropped",
            "Connections the server dropped: header_timeout, head_too_large (431), "
            "write_timeout (or its answer among the longest stalled past STALLED_ANSWERS_MB), "
            "evicted (MAX_CONNECTIONS).",
            ["reason"],
            registry=r,
        )
        self.levels = Levels()
        r.register(self.levels)

    def level(self, name: str, read: Callable[[], float]) -> None:
        """The gauge ``name`` (one of LEVELS), whose value ``read`` gives when scraped."""
        self.levels.readers[name] = (LEVELS[name], read)

    def names(self) -> set[str]:
        """Every sample name this service serves (the dashboard's tests read it)."""
        served = set(LEVELS)
        for family in self.registry.collect():
            # By type, not by the samples present: a labelled counter has none until used.
            if family.type == "histogram":
                served |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
            elif family.type == "counter":
                served.add(f"{family.name}_total")
        return served

    def request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        template = route or "unrouted"  # refused before routing (401, 413) or no such path
        self.requests.labels(template, method, str(status)).inc()
        self.request_seconds.labels(template).observe(seconds)
        if template.startswith("/browser/sessions"):
            self.browser_operations.labels(browser_operation(template, method), str(status)).inc()


def browser_operation(template: str, method: str) -> str:
    """``/browser/sessions/{session_id}/navigate`` POST -> ``navigate``; the session itself
    is ``create``, ``list``, ``get`` or ``delete``; tabs are ``tabs``, ``open_tab``,
    ``close_tab``."""
    parts = template.removeprefix("/browser/sessions").strip("/").split("/")
    if parts == [""]:
        return "create" if method == "POST" else "list"
    if len(parts) == 1:
        return {"DELETE": "delete"}.get(method, "get")
    if parts[1] == "tabs":
        if len(parts) == 3:
            return "close_tab"
        return "open_tab" if method == "POST" else "tabs"
    return parts[1]
