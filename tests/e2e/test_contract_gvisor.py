"""The sandbox's contract again, with runner pods under gVisor (the RuntimeClass gvisor).

The release is upgraded with ``runner.runtimeClassName=gvisor`` (and no pod user
namespace, which gVisor does not give) for this module, so every execution runs in a
pod whose kernel is gVisor's, with the sandbox made inside it as runner.bwrap makes it
there; then the release goes back to the node's runtime.
"""

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.contract.files import *  # noqa: F403
from tests.contract.sandbox import *  # noqa: F403
from tests.contract.sandbox import run_ok
from tests.e2e.release import WARM_PODS, Ingress, helm_set, wait_healthy

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def api(release: Ingress) -> Iterator[Ingress]:
    helm_set("runner.runtimeClassName=gvisor", "runner.userNamespace=false")
    wait_healthy(release, warm=WARM_PODS, timeout_s=300)
    under_gvisor = replace(release, kernel="gvisor")  # its own client
    try:
        yield under_gvisor
    finally:
        under_gvisor.client.close()
        helm_set("runner.runtimeClassName=", "runner.userNamespace=true")
        wait_healthy(release, warm=WARM_PODS, timeout_s=300)


@pytest.fixture(scope="module")
def uploads_api(api: Ingress) -> Ingress:
    return api


def test_executions_run_on_gvisors_kernel(api: Ingress) -> None:
    # The kernel a sandbox sees is the pod's: gVisor names itself in its release.
    assert run_ok(api, "import os; print(os.uname().release)").strip().endswith("-gvisor")
