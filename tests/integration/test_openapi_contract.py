"""The local service answers as its OpenAPI document says (tests/openapi_check.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openapi_check import conformance
from tests.support import ServiceProcess

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess()
    try:
        yield service
    finally:
        service.stop()


def test_every_answer_conforms_to_the_document(svc: ServiceProcess, tmp_path: Path) -> None:
    conformance(svc.base_url, svc.token, tmp_path, 12)
