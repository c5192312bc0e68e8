"""Streamed runs (Server-Sent Events) and rich results, the same in every placement."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.contract.contexts import context, run  # noqa: F401 - the fixture too
from tests.contract.target import Api
from tests.support import TIME_SCALE, wait_for

STREAM = {"Accept": "text/event-stream"}
# What differs between two runs of the same code (and nothing else may).
PER_RUN = ("executionId", "durationMs", "usage")


@dataclass
class Received:
    name: str
    data: Any
    at: float
    """When it arrived (time.monotonic())."""


def events_of(response: httpx.Response) -> Iterator[Received]:
    """The events of a streamed answer as they arrive (keep-alive comments skipped)."""
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            assert name is not None, line
            yield Received(name, json.loads(line[len("data: ") :]), time.monotonic())
            name = None


def stream(api: Api, path: str, body: dict[str, Any]) -> list[Received]:
    with api.client.stream("POST", path, json=body, headers=STREAM) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events_of(response))


def done_of(received: list[Received]) -> dict[str, Any]:
    assert received[-1].name == "done", received[-1]
    assert [r.name for r in received].count("done") == 1
    data: dict[str, Any] = received[-1].data
    return data


def text_of(received: list[Received], name: str) -> str:
    return "".join(r.data["text"] for r in received if r.name == name)


def same_run(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert {k: v for k, v in one.items() if k not in PER_RUN} == {
        k: v for k, v in other.items() if k not in PER_RUN
    }


def png_size(data: str) -> tuple[int, int]:
    """A PNG's width and height, read from its header (after checking its signature)."""
    raw = base64.b64decode(data, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


# --- streaming ------------------------------------------------------------------------


def test_output_streams_as_it_is_printed(api: Api) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')"
    received = stream(api, "/execute", {"code": code})
    first = next(r for r in received if r.name == "stdout")
    assert first.data["text"] == "first\n" and first.data["timestamp"] > 0
    assert received[-1].at - first.at > 1.5
    assert done_of(received)["stdout"] == "first\nsecond\n"


def test_interleaved_stdout_and_stderr_keep_their_order(api: Api) -> None:
    code = (
        "import sys, time\n"
        "for i in range(4):\n"
        "    print('out', i)\n"
        "    time.sleep(0.05)\n"
        "    print('err', i, file=sys.stderr)\n"
        "    time.sleep(0.05)\n"
    )
    received = stream(api, "/execute", {"code": code})
    order = [r.data["text"] for r in received if r.name in ("stdout", "stderr")]
    expected = [line for i in range(4) for line in (f"out {i}\n", f"err {i}\n")]
    assert order == expected


def test_a_streamed_run_ends_with_the_answer_an_unstreamed_one_gets(api: Api) -> None:
    code = "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nopen('/etc/shadow')\n"
    received = stream(api, "/execute", {"code": code})
    done = done_of(received)
    same_run(done, api.execute(code))
    assert text_of(received, "stdout") == done["stdout"]
    # The answer's stderr ends with the sandbox's annotation; the stream has what was written.
    assert done["stderr"].startswith(text_of(received, "stderr"))
    violations = [r.data for r in received if r.name == "violation"]
    assert {"kind": "filesystem", "target": "/etc/shadow"} in [
        {"kind": v["kind"], "target": v["target"]} for v in violations
    ]


def test_streamed_output_has_the_same_cap_as_the_answer(api: Api) -> None:
    code = "import sys\nsys.stdout.write('x' * (3 << 20))"
    received = stream(api, "/execute", {"code": code})
    done = done_of(received)
    assert done["truncated"]["stdout"] is True
    streamed = text_of(received, "stdout")
    assert streamed == done["stdout"] and len(streamed) < 3 << 20
    same_run(done, api.execute(code))


def test_a_refused_request_is_an_http_error_not_a_stream(api: Api) -> None:
    response = api.client.post("/execute", json={"code": 1}, headers=STREAM)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")


def test_a_caller_that_goes_away_ends_its_run(api: Api) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    with api.client.stream("POST", "/execute", json={"code": code}, headers=STREAM) as response:
        assert next(events_of(response)).name == "stdout"
    # Closed: the run is cancelled and its slot freed, long before its minute is up.
    deadline = time.monotonic() + 5 * TIME_SCALE
    while api.client.get("/health").json()["executions"]["admitted"] > 0:
        assert time.monotonic() < deadline, "the run still holds its slot"
        time.sleep(0.05)


# --- rich results ---------------------------------------------------------------------


def test_a_trailing_expression_is_a_result(api: Api) -> None:
    result = api.execute("x = 6\nx * 7")
    assert result["stdout"] == ""
    assert result["results"] == [{"type": "text/plain", "data": "42", "display": 0}]
    assert api.execute("x = 6\nx * 7;")["results"] == []  # a notebook's ; hides it
    assert api.execute("print(1)")["results"] == []  # None is no result


def test_a_dataframe_comes_back_as_html(api: Api) -> None:
    result = api.execute("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]}).head()")
    types = {r["type"]: r["data"] for r in result["results"]}
    assert "<table" in types["text/html"] and "text/plain" in types
    assert {r["display"] for r in result["results"]} == {0}


def test_a_figure_left_open_comes_back_as_a_png(api: Api) -> None:
    result = api.execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])")
    images = [r for r in result["results"] if r["type"] == "image/png"]
    assert len(images) == 1, result["results"]
    width, height = png_size(images[0]["data"])
    assert 300 < width < 2000 and 200 < height < 2000
    assert result["skippedResults"] == []


def test_figures_as_svg_on_request_and_plt_show_shows(api: Api) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('after')"
    result = api.execute(code, figureFormats=["image/svg+xml", "image/png"])
    types = [r["type"] for r in result["results"]]
    assert types == ["text/plain", "image/svg+xml", "image/png"]
    assert result["results"][1]["data"].lstrip().startswith("<?xml")
    assert result["stdout"] == "after\n"  # shown by plt.show(), and closed: not again


def test_display_shows_each_object_in_order(api: Api) -> None:
    result = api.execute(
        "display(1)\ndisplay({'a': 'b'})\nclass H:\n"
        "    def _repr_html_(self): return '<b>h</b>'\ndisplay(H())"
    )
    shown = [(r["display"], r["type"], r["data"]) for r in result["results"]]
    assert shown[:2] == [(0, "text/plain", "1"), (1, "text/plain", "{'a': 'b'}")]
    assert (2, "text/html", "<b>h</b>") in shown


def test_results_stream_as_they_are_displayed(api: Api) -> None:
    code = "import time\ndisplay('early')\ntime.sleep(1.5)\nprint('late')"
    received = stream(api, "/execute", {"code": code})
    result = next(r for r in received if r.name == "result")
    assert result.data == {"type": "text/plain", "data": "'early'", "display": 0}
    assert received[-1].at - result.at > 1.0
    assert done_of(received)["results"] == [result.data]


def test_a_huge_result_is_capped_and_reported(api: Api) -> None:
    result = api.execute("'x' * (20 << 20)")
    assert result["results"] == []
    assert result["skippedResults"] == [
        {"type": "text/plain", "display": 0, "size": (20 << 20) + 2, "reason": "too_large"}
    ]


def test_a_result_that_lies_about_its_type_is_reported_not_returned(api: Api) -> None:
    code = "class Fake:\n    def _repr_png_(self): return b'not a png'\nFake()"
    result = api.execute(code)
    assert [r["type"] for r in result["results"]] == ["text/plain"]
    assert result["skippedResults"] == [
        {"type": "image/png", "display": 0, "size": 12, "reason": "invalid"}
    ]


def test_results_written_to_the_events_pipe_by_hand_are_checked(api: Api) -> None:
    # The code can write to the events pipe itself: what it writes is held to the rules.
    code = (
        "import os\n"
        "fd = [int(f) for f in os.listdir('/proc/self/fd') if f not in ('0', '1', '2')]\n"
        "for f in fd:\n"
        "    try:\n"
        '        os.write(f, b\'{"result": {"text/x-evil": "a"}}\\nnot json\\n\')\n'
        "    except OSError:\n"
        "        pass\n"
    )
    result = api.execute(code)
    assert result["exitCode"] == 0, result
    assert result["results"] == []
    assert all(s["reason"] == "invalid" for s in result["skippedResults"])


@pytest.mark.parametrize("bad", [["image/gif"], [], ["image/png", "image/png"]])
def test_unknown_figure_formats_are_refused(api: Api, bad: list[str]) -> None:
    response = api.client.post("/execute", json={"code": "1", "figureFormats": bad})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"].startswith("figureFormats")


def test_a_figure_as_the_trailing_value_is_shown_once(api: Api) -> None:
    code = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nfig"
    result = api.execute(code)
    assert [r["type"] for r in result["results"]] == ["text/plain", "image/png"]


# --- a context's calls ---------------------------------------------------------------


def test_a_context_call_streams_and_ends_with_its_answer(api: Api, context: str) -> None:  # noqa: F811
    code = "import time\nprint('one', flush=True)\ntime.sleep(2)\ntotal = 40 + 2\ntotal"
    received = stream(api, f"/contexts/{context}/execute", {"code": code})
    first = next(r for r in received if r.name == "stdout")
    assert received[-1].at - first.at > 1.5
    done = done_of(received)
    assert done["stdout"] == text_of(received, "stdout") == "one\n"
    assert done["results"] == [{"type": "text/plain", "data": "42", "display": 0}]
    assert done["restarted"] is False
    assert run(api, context, "total")["results"][0]["data"] == "42"  # the state is kept


def test_a_context_call_whose_caller_goes_away_is_interrupted(api: Api, context: str) -> None:  # noqa: F811
    run(api, context, "kept = 'yes'")
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    path = f"/contexts/{context}/execute"
    with api.client.stream("POST", path, json={"code": code}, headers=STREAM) as response:
        assert next(events_of(response)).name == "stdout"
    # Interrupted (KeyboardInterrupt), not killed: free again soon, its state kept.
    wait_for(lambda: not api.client.get(f"/contexts/{context}").json()["busy"], 5)
    result = run(api, context, "print(kept)")
    assert (result["stdout"], result["restarted"]) == ("yes\n", False)


def test_figures_of_a_context_call_come_back_and_are_closed(api: Api, context: str) -> None:  # noqa: F811
    first = run(api, context, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nNone")
    assert [r["type"] for r in first["results"]] == ["text/plain", "image/png"]
    assert run(api, context, "len(plt.get_fignums())")["results"][0]["data"] == "0"
