"""Files in and out: inputs, harvesting (with hostile workspaces), inline and uploads."""

from __future__ import annotations

import base64

import pytest

from tests.contract.target import Api, Files


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def by_name(result: dict[str, object], key: str = "files") -> dict[str, dict[str, object]]:
    return {f["name"]: f for f in result[key]}  # type: ignore[index, union-attr]


def test_input_files_are_in_the_workspace(api: Api) -> None:
    result = api.execute(
        "import os\nprint(open('data/in.csv').read(), open('raw.bin', 'rb').read())\n"
        "print(oct(os.stat('data/in.csv').st_mode & 0o777))",
        files=[
            {"path": "data/in.csv", "content": b64(b"a,b\n1,2")},
            {"path": "./raw.bin", "content": b64(b"\x00\xff")},
        ],
    )
    assert result["exitCode"] == 0, result
    assert result["stdout"] == "a,b\n1,2 b'\\x00\\xff'\n0o644\n"
    # Inputs the code left unchanged are not returned.
    assert result["files"] == [] and result["skippedFiles"] == []


def test_changed_inputs_and_new_files_are_returned(api: Api) -> None:
    result = api.execute(
        "open('edit.txt', 'a').write('+more')\n"
        "import os; os.link('same.txt', 'hardlink.txt')\n"
        "open('new/deep.txt', 'w').write('x') if os.makedirs('new') is None else None",
        files=[
            {"path": "edit.txt", "content": b64(b"base")},
            {"path": "same.txt", "content": b64(b"same")},
        ],
    )
    files = by_name(result)
    assert sorted(files) == ["edit.txt", "hardlink.txt", "new/deep.txt"]
    assert base64.b64decode(files["edit.txt"]["content"]) == b"base+more"  # type: ignore[arg-type]
    assert files["new/deep.txt"]["size"] == 1


@pytest.mark.parametrize(
    ("files", "field", "rule"),
    [
        ([{"path": "/etc/passwd", "content": ""}], "files[0].path", "path_absolute"),
        ([{"path": "../escape", "content": ""}], "files[0].path", "path_traversal"),
        ([{"path": "a/../../b", "content": ""}], "files[0].path", "path_traversal"),
        ([{"path": ".env", "content": ""}], "files[0].path", "path_protected"),
        ([{"path": "secrets/key", "content": ""}], "files[0].path", "path_protected"),
        ([{"path": "a//b", "content": ""}], "files[0].path", "path_empty_component"),
        ([{"path": "dir/", "content": ""}], "files[0].path", "path_empty_component"),
        ([{"path": "", "content": ""}], "files[0].path", "string_too_short"),
        ([{"path": "x" * 256, "content": ""}], "files[0].path", "path_component_too_long"),
        ([{"path": "a", "content": "not base64!"}], "files[0]", "base64"),
        (
            [{"path": "a", "content": b64(b"1")}, {"path": "a", "content": ""}],
            "files",
            "unique_paths",
        ),
        ([{"path": "a", "content": ""}, {"path": "a/b", "content": ""}], "files", "path_conflict"),
        ([{"path": "a"}], "files[0].content", "missing"),
        ([{"path": 1, "content": ""}], "files[0].path", "string_type"),
        ("x", "files", "list_type"),
    ],
)
def test_bad_input_files_are_422(api: Api, files: object, field: str, rule: str) -> None:
    response = api.client.post("/execute", json={"code": "print(1)", "files": files})
    assert response.status_code == 422, response.text
    assert {"field": field, "rule": rule} in [
        {"field": d["field"], "rule": d["rule"]} for d in response.json()["details"]
    ]


def test_links_fifos_and_special_files_are_skipped_not_followed(api: Api) -> None:
    code = (
        "import os, socket\n"
        "os.symlink('/etc/passwd', 'passwd-link')\n"
        "os.symlink('/', 'root-link')\n"
        "os.symlink('/tmp', 'tmp-dir-link')\n"
        "open('/tmp/secret-in-tmp', 'w').write('tmp')\n"
        "os.mkfifo('fifo')\n"
        "s = socket.socket(socket.AF_UNIX); s.bind('sock')\n"
        "open('real.txt', 'w').write('real')\n"
    )
    result = api.execute(code, timeoutMs=5000)
    assert result["timedOut"] is False
    assert [f["name"] for f in result["files"]] == ["real.txt"]
    skipped = {s["name"]: s["reason"] for s in result["skippedFiles"]}
    assert skipped == {
        "passwd-link": "symlink",
        "root-link": "symlink",
        "tmp-dir-link": "symlink",
        "fifo": "not_regular",
        "sock": "not_regular",
    }


def test_many_files_do_not_hang_or_crash(api: Api) -> None:
    result = api.execute(
        "import os\nfor i in range(3000): open(f'f{i:05}', 'w')\n", timeoutMs=20_000
    )
    assert result["exitCode"] == 0
    assert len(result["files"]) == 50  # MAX_OUTPUT_FILES
    assert sum(1 for s in result["skippedFiles"] if s["reason"] == "too_many_files") > 0


def test_files_written_before_a_timeout_are_still_returned(api: Api) -> None:
    result = api.execute(
        "open('partial.txt', 'w').write('done so far')\nimport time; time.sleep(30)", timeoutMs=500
    )
    assert result["timedOut"] is True
    assert [f["name"] for f in result["files"]] == ["partial.txt"]


def test_binary_output_round_trips(api: Api) -> None:
    result = api.execute("open('all.bin', 'wb').write(bytes(range(256)) * 4)")
    assert base64.b64decode(result["files"][0]["content"]) == bytes(range(256)) * 4


def test_plotting_stack_is_available(api: Api) -> None:
    code = (
        "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.DataFrame({'x': np.arange(5), 'y': np.arange(5) ** 2})\n"
        "df.to_csv('data.csv', index=False)\n"
        "plt.plot(df.x, df.y); plt.savefig('chart.png')\n"
    )
    result = api.execute(code, timeoutMs=60_000)
    assert result["exitCode"] == 0, result["stderr"]
    assert result["violations"] == []
    files = by_name(result)
    assert base64.b64decode(files["chart.png"]["content"])[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[arg-type]
    assert base64.b64decode(files["data.csv"]["content"]).startswith(b"x,y\n0,0\n")  # type: ignore[arg-type]


def test_files_are_uploaded_with_token_and_public_flag(uploads_api: Api, files: Files) -> None:
    files.clear()
    url = files.url("/upload")
    result = uploads_api.execute(
        "open('a.txt', 'w').write('alpha')\nopen('b.png', 'wb').write(b'\\x89PNG')\n"
        "open('fail-c.txt', 'w').write('gamma')",
        fileUploadUrl=url,
        uploadToken="upload-secret",
        public=True,
    )
    assert result["files"] == []
    uploads = {u["filename"]: u for u in result["uploads"]}
    assert uploads["a.txt"] == {
        "filename": "a.txt",
        "url": "http://files.test/a.txt",
        "status": 201,
    }
    assert uploads["b.png"]["status"] == 201
    # One failing upload is reported and leaves the others alone.
    assert uploads["fail-c.txt"]["status"] == 500
    received = {r.filename: r for r in files.received()}
    assert received["a.txt"].content == b"alpha"
    assert received["b.png"].content == b"\x89PNG"
    assert received["b.png"].content_type == "image/png"
    assert received["a.txt"].public == "true"
    assert received["a.txt"].authorization == "Bearer upload-secret"


def test_upload_without_token_sends_no_authorization(uploads_api: Api, files: Files) -> None:
    files.clear()
    result = uploads_api.execute("open('x.txt', 'w').write('x')", fileUploadUrl=files.url("/up"))
    assert result["uploads"][0]["status"] == 201
    (sent,) = files.received()
    assert sent.authorization is None
    assert sent.public == "false"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.2:80/up", "not in UPLOAD_ALLOWED_HOSTS"),
        ("http://169.254.169.254/latest", "link-local or metadata address (always refused)"),
        ("http://user:pw@127.0.0.1:1/up", "credentials in the URL"),
    ],
)
def test_refused_targets_are_422_before_running(uploads_api: Api, url: str, message: str) -> None:
    response = uploads_api.client.post("/execute", json={"code": "print(1)", "fileUploadUrl": url})
    assert response.status_code == 422
    detail = response.json()["details"][0]
    assert detail["field"] == "fileUploadUrl" and detail["rule"] == "upload_target"
    assert message in detail["message"]
