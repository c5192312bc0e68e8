"""The integration tier's targets for the API contract (tests/contract): the local service."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.file_service import FileService
from tests.hostile import REPORT
from tests.support import ServiceProcess


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The hostile callers' figures (tests/integration/test_hostile_callers.py)."""
    if REPORT:
        terminalreporter.section("hostile callers: their victim, beside each attack")
        for figures in REPORT:
            terminalreporter.write_line(figures.line())


@pytest.fixture(scope="session")
def api(service: ServiceProcess) -> ServiceProcess:
    """The contract's target: the local service with default settings."""
    return service


@pytest.fixture(scope="module")
def uploading(file_service: FileService) -> Iterator[ServiceProcess]:
    """A service that may upload to the loopback file service (and to a closed port)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    svc = ServiceProcess(
        upload_allowed_hosts=f"127.0.0.1:{file_service.port}, localhost:{closed_port}, "
        "169.254.169.254"
    )
    svc.closed_port = closed_port  # type: ignore[attr-defined]
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def uploads_api(uploading: ServiceProcess) -> ServiceProcess:
    return uploading


@pytest.fixture
def files(file_service: FileService) -> FileService:
    return file_service
