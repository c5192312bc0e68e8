"""The upload client's own guard: every connection is checked, not only the URL up front."""

from __future__ import annotations

import httpx
import pytest

from controller.uploads.policy import UploadPolicy
from controller.uploads.transport import GuardedTransport
from sandbox_common.addresses import parse_host_ports
from tests.file_service import FileService


async def post(policy: UploadPolicy, url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=GuardedTransport(policy, 4), timeout=5) as client:
        return await client.post(url, files={"file": ("a.txt", b"a")}, data={"public": "false"})


async def test_a_name_resolving_to_loopback_is_refused_at_connection(
    file_service: FileService,
) -> None:
    # "localhost" is what a rebinding name turns into: the check happens at connect time.
    with pytest.raises(httpx.ConnectError, match="a loopback address"):
        await post(UploadPolicy(), f"http://localhost:{file_service.port}/up")


async def test_a_listed_host_connects(file_service: FileService) -> None:
    policy = UploadPolicy(parse_host_ports(f"localhost:{file_service.port}"))
    response = await post(policy, f"http://localhost:{file_service.port}/up")
    assert response.status_code == 201


async def test_metadata_stays_refused_when_listed() -> None:
    policy = UploadPolicy(parse_host_ports("169.254.169.254"))
    with pytest.raises(httpx.ConnectError, match="always refused"):
        await post(policy, "http://169.254.169.254/latest/meta-data/")


async def test_unlisted_hosts_are_refused_before_resolving(file_service: FileService) -> None:
    policy = UploadPolicy(parse_host_ports("files.example"))
    with pytest.raises(httpx.ConnectError, match="not in UPLOAD_ALLOWED_HOSTS"):
        await post(policy, f"http://127.0.0.1:{file_service.port}/up")


async def test_a_name_that_fails_to_resolve_is_a_connect_error() -> None:
    # Not an OSError escaping httpx: the upload's entry says why, the execution answers.
    policy = UploadPolicy(parse_host_ports("files.invalid"))
    with pytest.raises(httpx.ConnectError, match=r"files\.invalid does not resolve"):
        await post(policy, "http://files.invalid/up")
