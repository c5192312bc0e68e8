"""The Kubernetes installation answers as its OpenAPI document says, through the Ingress
(tests/openapi_check.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.release import Ingress
from tests.openapi_check import conformance

pytestmark = pytest.mark.timeout(600)


def test_every_answer_through_the_ingress_conforms(release: Ingress, tmp_path: Path) -> None:
    conformance(release.base_url, release.token, tmp_path, 3)
