"""The API contract (tests/contract) against the local service."""

from tests.contract.api import *  # noqa: F403
from tests.contract.contexts import *  # noqa: F403
from tests.contract.files import *  # noqa: F403
from tests.contract.sandbox import *  # noqa: F403
from tests.contract.streaming import *  # noqa: F403
