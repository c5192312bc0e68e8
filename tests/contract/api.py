"""The HTTP contract: auth, health, /execute results and bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.contract.target import Api


def test_health_needs_no_token_and_reports_a_verified_sandbox(api: Api) -> None:
    response = httpx.get(api.base_url + "/health", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["backend"] == api.backend
    assert body["sandbox"]["ok"] is True
    assert body["executions"]["admitted"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_execute_without_the_right_token_is_401(api: Api, headers: dict[str, str]) -> None:
    response = httpx.post(api.base_url + "/execute", json={"code": "print(1)"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


def test_auth_comes_before_validation(api: Api) -> None:
    response = httpx.post(api.base_url + "/execute", content=b"not json")
    assert response.status_code == 401


def test_the_api_description_is_public_and_nothing_else(api: Api) -> None:
    document = httpx.get(api.base_url + "/openapi.json")
    assert document.status_code == 200 and "/execute" in document.json()["paths"]
    assert httpx.get(api.base_url + "/docs").status_code == 200
    for path in ("/metrics", "/browser/sessions"):
        assert httpx.get(api.base_url + path).status_code == 401


def test_a_successful_run(api: Api) -> None:
    result = api.execute("import sys; print(2 + 2); print('warn', file=sys.stderr)")
    assert result["exitCode"] == 0
    assert result["stdout"] == "4\n"
    assert result["stderr"] == "warn\n"
    assert result["timedOut"] is False
    assert result["signal"] is None
    assert result["violations"] == []
    assert result["truncated"] == {"stdout": False, "stderr": False}
    assert result["uploads"] == []
    assert result["executionId"].startswith("ex-")
    assert 0 < result["durationMs"] < 10_000
    assert result["usage"]["peakMemoryKb"] > 1000
    assert result["usage"]["cpuUserMs"] >= 0


def test_failing_code_is_a_result_not_an_error(api: Api) -> None:
    result = api.execute("def f():\n    raise ValueError('boom')\nf()")
    assert result["exitCode"] == 1
    assert result["stderr"].startswith(
        'Traceback (most recent call last):\n  File "<string>", line 3, in <module>'
    )
    assert "ValueError: boom" in result["stderr"]
    assert "stub" not in result["stderr"]
    assert api.execute("raise SystemExit(7)")["exitCode"] == 7
    message = api.execute("raise SystemExit('bye')")
    assert message["exitCode"] == 1 and message["stderr"] == "bye\n"
    assert api.execute("syntax error here")["exitCode"] == 1


def test_stdin_is_given_or_empty(api: Api) -> None:
    given = api.execute("import sys; print(sys.stdin.read().upper())", stdin="héllo\nx")
    assert given["stdout"] == "HÉLLO\nX\n"
    big = "a" * 300_000
    assert (
        api.execute("import sys; print(len(sys.stdin.read()))", stdin=big)["stdout"] == "300000\n"
    )
    empty = api.execute("import sys; print(repr(sys.stdin.read()))")
    assert empty["stdout"] == "''\n"


def test_code_runs_like_python_dash_c(api: Api) -> None:
    result = api.execute(
        "import sys, atexit\natexit.register(lambda: print('bye'))\n"
        "print(__name__, sys.argv, sys.path[0] == '')"
    )
    assert result["stdout"] == "__main__ ['-c'] True\nbye\n"


def test_exit_behaves_like_the_interpreter(api: Api) -> None:
    threads = api.execute(
        "import threading, time\n"
        "def later():\n    time.sleep(0.2); print('thread done', flush=True)\n"
        "threading.Thread(target=later).start()\nprint('main done')"
    )
    assert threads["stdout"] == "main done\nthread done\n"
    unflushed = api.execute(
        "f = open('out.txt', 'w'); f.write('kept')\n"
        "import atexit; atexit.register(lambda: print(open('out.txt').read()))"
    )
    # Exit handlers run before the namespace is released, as at a normal exit.
    assert unflushed["exitCode"] == 0
    flushed = api.execute(
        "import atexit, os\n"
        "atexit.register(lambda: None)\n"
        "f = open('out.txt', 'w'); f.write('kept')\n"
        "class Check:\n"
        "    def __del__(self):\n"
        "        print('finalized', flush=True)\n"
        "c = Check()"
    )
    assert flushed["stdout"] == "finalized\n"
    # As in CPython, an exit handler's SystemExit is reported and ignored.
    in_handler = api.execute("import atexit, sys; atexit.register(sys.exit, 4)")
    assert in_handler["exitCode"] == 0
    assert "Exception ignored in atexit callback" in in_handler["stderr"]
    big = api.execute("raise SystemExit(256 + 3)")
    assert big["exitCode"] == 3
    syntax = api.execute("def broken(:\n  pass")
    assert syntax["exitCode"] == 1
    assert syntax["stderr"].startswith('  File "<string>", line 1\n')
    assert "SyntaxError" in syntax["stderr"] and "stub" not in syntax["stderr"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({}, "code", "missing"),
        ({"code": 5}, "code", "string_type"),
        ({"code": "x", "timeoutMs": 0}, "timeoutMs", "greater_than_equal"),
        ({"code": "x", "timeoutMs": 120_001}, "timeoutMs", "less_than_equal"),
        ({"code": "x", "timeoutMs": "100"}, "timeoutMs", "int_type"),
        ({"code": "x", "timeoutMs": 1.5}, "timeoutMs", "int_type"),
        ({"code": "x", "stdin": 3}, "stdin", "string_type"),
        ({"code": "x", "public": "yes"}, "public", "bool_type"),
        ({"code": "x", "fileUploadUrl": "ftp://files.example/"}, "fileUploadUrl", "url_scheme"),
        ({"code": "x", "fileUploadUrl": "not a url"}, "fileUploadUrl", "url_parsing"),
        ({"code": "x", "timeout": 5}, "timeout", "extra_forbidden"),
        ({"code": "x\x00y"}, "code", "no_nul"),
    ],
)
def test_bad_fields_are_422_naming_field_and_rule(
    api: Api, body: dict[str, object], field: str, rule: str
) -> None:
    response = api.client.post("/execute", json=body)
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert {"field": field, "rule": rule} in [
        {"field": d["field"], "rule": d["rule"]} for d in details
    ]


@pytest.mark.parametrize("raw", [b"not json", b"", b"[1, 2]", b'{"code": "x"', b"\xff\xfe"])
def test_non_json_bodies_are_422(api: Api, raw: bytes) -> None:
    response = api.client.post("/execute", content=raw)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"


def test_json_without_content_type_is_accepted(api: Api) -> None:
    response = api.client.post(
        "/execute",
        content=b'{"code": "print(5)"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()["stdout"] == "5\n"


def test_unknown_path_and_method_are_json_errors(api: Api) -> None:
    assert api.client.get("/nope").json()["error"] == "not_found"
    response = api.client.get("/execute")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_site_setup_matches_a_normal_interpreter(api: Api) -> None:
    # The sandbox starts Python with -S and sets up site itself: check what code sees.
    result = api.execute(
        "import sys, builtins\n"
        "print(all(hasattr(builtins, n) for n in ('exit', 'quit', 'help', 'copyright')))\n"
        "print(any(p.endswith(('site-packages', 'dist-packages')) for p in sys.path))\n"
        "print(sys.prefix == sys.exec_prefix and sys.prefix != '')\n"
        "exit(3)"
    )
    assert result["stdout"] == "True\nTrue\nTrue\n"
    assert result["exitCode"] == 3
