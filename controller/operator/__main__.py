"""``python -m controller.operator``: the operator of BrowserSessions and CodeContexts.

Each kind lives in its own namespace (BROWSER_NAMESPACE, KUBERNETES_NAMESPACE), watched
by one kopf operator.

Standalone (no kopf peering): the chart runs one replica with the Recreate strategy, so
two operators never run side by side in normal operation, and where they might (a node
lost with the old pod still running) the writes that matter cannot collide: a warm pod
is claimed by a compare-and-swap on its resourceVersion, and every status write is a
judgement both would make alike.  Peering would need a cluster-wide CRD of kopf's own
and would still let operators of equal priority run together.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

from controller.browser.client import AgentClient
from controller.kubernetes.api import KubeApi, load_client
from controller.operator.handlers import Operator, register
from controller.operator.settings import OperatorSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One line per handled event and per probe is noise; their failures still show.
    for noisy in ("kopf.objects", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    kube = load_client()
    agents = AgentClient()
    operators = [
        Operator(
            settings.browser_kind(),
            KubeApi(kube, settings.browser_namespace, quota="browser.quota"),
            agents,
        ),
        Operator(settings.context_kind(), KubeApi(kube, settings.kubernetes_namespace), agents),
    ]
    registry = kopf.OperatorRegistry()
    register(registry, operators, agents)
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=sorted({settings.browser_namespace, settings.kubernetes_namespace}),
            liveness_endpoint=f"http://0.0.0.0:{settings.operator_health_port}/healthz",
        )
    )


if __name__ == "__main__":
    main()
