"""``python -m controller.egress``: the egress proxy of Kubernetes mode (its Deployment)."""

from __future__ import annotations

import asyncio
import logging

from controller.egress.server import serve
from controller.settings import NetworkRules


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(NetworkRules()))  # type: ignore[call-arg]  # from the environment


if __name__ == "__main__":
    main()
