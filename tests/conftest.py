"""Shared fixtures; each tier's marker is applied by directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.file_service import FileService
from tests.pages import PageServer
from tests.support import ServiceProcess

TIERS = {"unit", "integration", "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceProcess]:
    """The service with default settings, shared by the tests that do not change them."""
    svc = ServiceProcess()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def file_service() -> Iterator[FileService]:
    """A real multipart file service on loopback, storing what it receives."""
    files = FileService()
    files.start()
    try:
        yield files
    finally:
        files.stop()


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    """Test pages served on loopback, one server per test module."""
    server = PageServer()
    yield server
    server.close()
