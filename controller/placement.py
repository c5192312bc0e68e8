"""Where things run: the backends that ``BACKEND`` names, built for the app's lifespan.

The only module that knows the concrete backends; the app and its tests take any
ExecutionBackend and SessionBackend, so a test can inject fakes.  A placement's modules
are imported only when it is chosen (local mode never imports the Kubernetes client).
"""

from __future__ import annotations

from controller.browser.client import AgentClient
from controller.browser.service import BrowserSessions
from controller.browser.sessions import SessionService
from controller.budget import MemoryBudget
from controller.contexts.placement import ContextPlacement, ContextSessions, NoContexts
from controller.execution.backend import ExecutionBackend
from controller.metrics import Metrics
from controller.settings import Settings


def execution_backend(settings: Settings) -> ExecutionBackend:
    if settings.backend == "local":
        from controller.execution.local import LocalBackend

        return LocalBackend(settings)
    from controller.kubernetes.backend import KubernetesBackend

    return KubernetesBackend(settings)


def memory_budget(settings: Settings) -> MemoryBudget | None:
    """Local: the host's memory, shared by executions and browsers.  Kubernetes: none
    here (the pods' limits and the namespaces' quotas bound the cluster's)."""
    return MemoryBudget(settings.memory_budget) if settings.backend == "local" else None


def browser_sessions(
    settings: Settings, client: AgentClient, budget: MemoryBudget | None = None
) -> BrowserSessions:
    """Local: sessions in this process over agent processes.  Kubernetes: BrowserSession
    resources, whose pods the operator (controller.operator) manages."""
    if settings.backend == "local":
        from controller.browser.local import LocalSessionBackend

        return SessionService(settings, LocalSessionBackend(settings), client, budget)
    from controller.kubernetes.sessions import KubernetesSessions

    return KubernetesSessions(settings, client)


def context_sessions(
    settings: Settings,
    backend: ExecutionBackend,
    placement: ContextPlacement | None = None,
    budget: MemoryBudget | None = None,
    metrics: Metrics | None = None,
) -> ContextSessions:
    """Local: contexts in this process, each a sandbox of the local backend (from its
    warm pool).  Kubernetes: CodeContext resources, whose runner pods the operator
    manages.  ``placement``: where this process opens them instead (tests' fakes)."""
    from controller.contexts.sessions import LocalContextSessions

    if placement is not None:
        return LocalContextSessions(settings, placement, budget, metrics)
    from controller.execution.local import LocalBackend

    if isinstance(backend, LocalBackend):
        from controller.contexts.local import LocalContexts

        return LocalContextSessions(settings, LocalContexts(backend), budget, metrics)
    if settings.backend == "kubernetes":
        from controller.kubernetes.contexts import KubernetesContexts

        return KubernetesContexts(settings, metrics=metrics)
    why = f"code contexts need BACKEND=local or kubernetes, not {settings.backend}"
    return LocalContextSessions(settings, NoContexts(why), budget, metrics)
