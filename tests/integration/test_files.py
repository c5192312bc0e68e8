"""Files in and out: inputs, harvesting (with hostile workspaces), inline and uploads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.files import b64
from tests.file_service import FileService
from tests.support import ServiceProcess

# --- inputs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_files() -> Iterator[ServiceProcess]:
    with ServiceProcess(
        max_input_files="3",
        max_input_bytes="100",
        max_output_files="3",
        max_output_file_bytes="1000",
        max_output_bytes="1500",
        max_inline_bytes="1200",
    ) as svc:
        yield svc


def test_input_limits_are_422(small_files: ServiceProcess) -> None:
    many = [{"path": f"f{i}", "content": ""} for i in range(4)]
    response = small_files.client.post("/execute", json={"code": "1", "files": many})
    assert response.json()["details"][0] == {
        "field": "files",
        "rule": "max_items",
        "message": "at most 3 files (setting MAX_INPUT_FILES)",
    }
    big = [{"path": "f", "content": b64(b"x" * 101)}]
    response = small_files.client.post("/execute", json={"code": "1", "files": big})
    assert response.json()["details"][0]["rule"] == "max_bytes"


# --- harvesting from a hostile workspace ---------------------------------------------------


def test_size_and_count_limits_skip_and_report(small_files: ServiceProcess) -> None:
    code = (
        "open('big.bin', 'wb').write(b'x' * 1001)\n"
        "for i in range(5): open(f'f{i}.txt', 'w').write('y' * 400)\n"
    )
    result = small_files.execute(code)
    returned = [f["name"] for f in result["files"]]
    skipped = {s["name"]: (s["reason"], s["size"]) for s in result["skippedFiles"]}
    assert returned == ["f0.txt", "f1.txt", "f2.txt"]
    assert skipped["big.bin"] == ("too_large", 1001)
    assert skipped["f3.txt"][0] in ("too_many_files", "total_limit")
    assert skipped["f4.txt"][0] in ("too_many_files", "total_limit")


def test_total_and_inline_limits(small_files: ServiceProcess) -> None:
    result = small_files.execute("for name in 'abc': open(name, 'w').write(name * 700)")
    # 2 x 700 fit the harvest total (1500) ...
    skipped = {s["name"]: s["reason"] for s in result["skippedFiles"]}
    assert skipped["c"] == "total_limit"
    # ... but only one fits the inline total (1200).
    assert [f["name"] for f in result["files"]] == ["a"]
    assert skipped["b"] == "inline_limit"


# --- uploads -------------------------------------------------------------------------------


def test_unreachable_file_service_is_an_error_entry(uploading: ServiceProcess) -> None:
    port = uploading.closed_port  # type: ignore[attr-defined]
    result = uploading.execute(
        "print('ran'); open('x.txt', 'w').write('x')", fileUploadUrl=f"http://localhost:{port}/up"
    )
    assert result["exitCode"] == 0 and result["stdout"] == "ran\n"
    assert result["uploads"][0]["filename"] == "x.txt"
    assert str(result["uploads"][0]["status"]).startswith("error: ConnectError")


def test_private_targets_need_listing(service: ServiceProcess, file_service: FileService) -> None:
    response = service.client.post(
        "/execute",
        json={"code": "print(1)", "fileUploadUrl": f"http://127.0.0.1:{file_service.port}/up"},
    )
    assert response.status_code == 422
    assert "a loopback address" in response.json()["details"][0]["message"]
