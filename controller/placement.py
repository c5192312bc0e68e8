"""Where things run: the backends that ``BACKEND`` names, built for the app's lifespan.

The only module that knows the concrete backends; the app and its tests take any
ExecutionBackend and SessionBackend, so a test can inject fakes.  A placement's modules
are imported only when it is chosen (local mode never imports the Kubernetes client).
"""

from __future__ import annotations

from controller.browser.client import AgentClient
from controller.browser.service import BrowserSessions
from controller.browser.sessions import SessionService
from controller.execution.backend import ExecutionBackend
from controller.settings import Settings


def execution_backend(settings: Settings) -> ExecutionBackend:
    if settings.backend == "local":
        from controller.execution.local import LocalBackend

        return LocalBackend(settings)
    from controller.kubernetes.backend import KubernetesBackend

    return KubernetesBackend(settings)


def browser_sessions(settings: Settings, client: AgentClient) -> BrowserSessions:
    """Local: sessions in this process over agent processes.  Kubernetes: BrowserSession
    resources, whose pods the operator (controller.operator) manages."""
    if settings.backend == "local":
        from controller.browser.local import LocalSessionBackend

        return SessionService(settings, LocalSessionBackend(settings), client)
    from controller.kubernetes.sessions import KubernetesSessions

    return KubernetesSessions(settings, client)
