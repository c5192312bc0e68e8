"""The API contract (tests/contract) against the Kubernetes installation, through the Ingress."""

import pytest

from tests.contract.api import *  # noqa: F403
from tests.contract.contexts import *  # noqa: F403
from tests.contract.files import *  # noqa: F403
from tests.contract.sandbox import *  # noqa: F403

pytestmark = pytest.mark.timeout(180)
