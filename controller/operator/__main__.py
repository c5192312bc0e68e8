"""``python -m controller.operator``: the BrowserSession operator, in one namespace.

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
    api = KubeApi(load_client(), settings.browser_namespace, quota="browser.quota")
    operator = Operator(settings, api, AgentClient())
    registry = kopf.OperatorRegistry()
    register(registry, operator)
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=[settings.browser_namespace],
            liveness_endpoint=f"http://0.0.0.0:{settings.operator_health_port}/healthz",
        )
    )


if __name__ == "__main__":
    main()
