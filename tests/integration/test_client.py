"""The Python client and the CLI against the real local service (sandboxes, Chromium)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_client import (
    Client,
    ExecutionResult,
    InputFile,
    InvalidRequest,
    NotFound,
    Output,
    Result,
)
from tests.pages import PageServer
from tests.support import ServiceProcess

pytestmark = pytest.mark.timeout(120)
CLI = Path(sys.executable).with_name("sandbox-controller")


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess(browser_warm_agents="1", browser_allow_private_networks="true")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def client(svc: ServiceProcess) -> Iterator[Client]:
    with Client(svc.base_url, svc.token) as client:
        yield client


def test_execute_with_files_and_stdin(client: Client) -> None:
    code = (
        "import sys\n"
        "data = open('in/data.csv').read()\n"
        "open('out.txt', 'w').write(data.upper())\n"
        "print(sys.stdin.read().strip(), len(data))\n"
        "sys.exit(4)"
    )
    result = client.execute(code, files=[InputFile("in/data.csv", b"a,b\n")], stdin="hello")
    assert (result.exit_code, result.stdout, result.ok) == (4, "hello 4\n", False)
    assert {f.name: f.content for f in result.files} == {"out.txt": b"A,B\n"}
    timed_out = client.execute("while True: pass", timeout_ms=300)
    assert timed_out.timed_out and timed_out.exit_code is None
    with pytest.raises(InvalidRequest) as refused:
        client.execute("print(1)", timeout_ms=10**9)
    assert refused.value.details[0]["field"] == "timeoutMs"


def test_a_code_context_as_a_context_manager(client: Client) -> None:
    with client.context(files=[InputFile("in.csv", b"1,2\n")], labels={"who": "test"}) as ctx:
        assert ctx.context_id.startswith("ctx-")
        assert ctx.run("import csv\nrows = list(csv.reader(open('in.csv')))").ok
        result = ctx.run("print(sum(int(v) for v in rows[0]))")
        assert (result.stdout, result.restarted) == ("3\n", False)
        ctx.files.write("notes/a.txt", "written")
        assert ctx.run("print(open('notes/a.txt').read())").stdout == "written\n"
        ctx.run("open('made.bin', 'wb').write(bytes(range(3)))")
        assert ctx.files.read("made.bin") == b"\x00\x01\x02"
        assert {f.path for f in ctx.files.list()} == {"in.csv", "notes/a.txt", "made.bin"}
        ctx.files.delete("notes")
        ctx.restart()
        assert "NameError" in ctx.run("rows").stderr
        assert ctx.info()["restarts"] == 1
        context_id = ctx.context_id
    with pytest.raises(NotFound):  # closed on leaving the block
        client.context(context_id=context_id).run("1")


def test_the_cli_runs_scripts_in_a_context_and_a_repl_on_it(
    svc: ServiceProcess, client: Client, tmp_path: Path
) -> None:
    context = client.context().open()
    try:
        (tmp_path / "define.py").write_text("total = len(open('data.csv').read())")
        (tmp_path / "data.csv").write_text("x,y\n")
        first = run_cli(
            svc,
            "exec",
            "define.py",
            "--context",
            context.context_id,
            "--file",
            "data.csv",
            cwd=tmp_path,
        )
        assert first.returncode == 0, first.stderr
        second = run_cli(
            svc, "exec", "-", "--context", context.context_id, stdin="print(total)", cwd=tmp_path
        )
        assert (second.returncode, second.stdout) == (0, "4\n")
        session = run_cli(
            svc,
            "repl",
            "--context",
            context.context_id,
            stdin="doubled = total * 2\ndoubled + 1\ndef f():\n    return 'in f'\n\nf()\n",
            cwd=tmp_path,
        )
        assert session.returncode == 0, session.stderr
        assert "9\n" in session.stdout and "'in f'\n" in session.stdout
        assert context.run("print(doubled)").stdout == "8\n"  # the repl's state, kept
    finally:
        context.close()
    fresh = run_cli(svc, "repl", stdin="print('hi')\n", cwd=tmp_path)
    assert "hi\n" in fresh.stdout
    assert client.health()  # and the repl's own context was closed on leaving:
    assert svc.client.get("/contexts").json()["contexts"] == []


def test_a_browser_session_as_a_context_manager(
    svc: ServiceProcess, client: Client, pages: PageServer
) -> None:
    with client.browser(device="iPhone 13") as page:
        loaded = page.navigate(f"{pages.base}/form")
        assert loaded["status"] == 200 and loaded["title"] == "Form"
        page.fill("#name", "sandbox")
        page.click("#go")
        assert "clicked:sandbox" in page.content()
        assert page.screenshot().startswith(b"\x89PNG")
        assert svc.client.get("/browser/sessions").json()["sessions"]
    # Closed on leaving the block; closing again is done too.
    assert svc.client.get("/browser/sessions").json()["sessions"] == []
    page.close()
    # A session closed elsewhere (its idle timeout, another process of the caller's).
    with client.browser() as gone:
        assert svc.client.delete(f"/browser/sessions/{gone.session_id}").status_code == 204
        with pytest.raises(NotFound, match="no browser session"):
            gone.content()


def run_cli(
    svc: ServiceProcess, *args: str, stdin: str = "", cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SANDBOX_URL": svc.base_url, "SANDBOX_TOKEN": svc.token}
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=90
    )


def test_the_cli_runs_a_script_as_if_it_ran_here(svc: ServiceProcess, tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(
        "import sys\nprint(open('data.csv').read().strip())\nprint('to stderr', file=sys.stderr)\n"
        "open('result.txt', 'w').write('done')\nsys.exit(7)\n"
    )
    (tmp_path / "data.csv").write_text("x,y\n")
    done = run_cli(
        svc,
        "exec",
        "script.py",
        "--file",
        "data.csv",
        "--timeout",
        "5s",
        "--out",
        "got",
        cwd=tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (7, "x,y\n", "to stderr\n")
    assert (tmp_path / "got" / "result.txt").read_text() == "done"
    piped = run_cli(svc, "exec", "-", stdin="print(6 * 7)", cwd=tmp_path)
    assert (piped.returncode, piped.stdout) == (0, "42\n")  # the script from stdin
    (tmp_path / "reverse.py").write_text("print(input()[::-1])")
    reversed_ = run_cli(svc, "exec", "reverse.py", "--stdin", "-", stdin="abc", cwd=tmp_path)
    assert (reversed_.returncode, reversed_.stdout) == (0, "cba\n")
    slow = run_cli(svc, "exec", "-", "--timeout", "300ms", stdin="while True: pass", cwd=tmp_path)
    assert slow.returncode == 124
    wrong = {**os.environ, "SANDBOX_URL": svc.base_url, "SANDBOX_TOKEN": "w" * 32}
    denied = subprocess.run(
        [str(CLI), "exec", "-"], input="1", capture_output=True, text=True, env=wrong, timeout=60
    )
    assert denied.returncode == 125 and "401 unauthorized" in denied.stderr


def test_a_streamed_run_yields_as_it_happens_and_ends_with_its_result(client: Client) -> None:
    code = "import time\nprint('one', flush=True)\ntime.sleep(1.5)\ndisplay('shown')\n6 * 7"
    arrived: list[tuple[float, object]] = []
    for event in client.stream(code):
        arrived.append((time.monotonic(), event))
    first_at, first = arrived[0]
    assert first == Output("stdout", "one\n", first.timestamp)  # type: ignore[union-attr]
    last_at, last = arrived[-1]
    assert isinstance(last, ExecutionResult) and last_at - first_at > 1.0
    results = [e for _, e in arrived if isinstance(e, Result)]
    assert [(r.display, r.data) for r in results] == [(0, "'shown'"), (1, "42")]
    assert last.results == results and last.stdout == "one\n"
    # Leaving early ends the run; the client stays usable.
    for event in client.stream("import time\nprint('x', flush=True)\ntime.sleep(60)"):
        assert isinstance(event, Output)
        break
    assert client.execute("print(1)").stdout == "1\n"


def test_the_cli_saves_image_results_and_prints_the_rest(
    svc: ServiceProcess, tmp_path: Path
) -> None:
    code = "import matplotlib.pyplot as plt\nprint('plotting')\nplt.plot([1, 2])\n'done'"
    done = run_cli(svc, "exec", "-", "--out", "got", stdin=code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "plotting\n'done'\n"
    saved = tmp_path / "got" / "result-1.png"
    assert saved.read_bytes().startswith(b"\x89PNG") and str(saved.name) in done.stderr


def test_the_cli_browses(svc: ServiceProcess, pages: PageServer, tmp_path: Path) -> None:
    done = run_cli(
        svc,
        "browse",
        f"{pages.base}/form",
        "--screenshot",
        "p.png",
        "--content",
        "p.html",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "Form"
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert '<input id="name"' in (tmp_path / "p.html").read_text()
