"""The /browser API driving real Chromium against pages served on loopback by the test.

One service (private networks allowed, so the test's loopback pages are reachable) and
one session are shared by the module; tests that need their own session make one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser_support import agent_dirs
from tests.pages import PageServer
from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        browser_allow_private_networks="true", browser_warm_agents="1", max_browser_sessions="4"
    )
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def session(svc: ServiceProcess) -> str:
    response = svc.client.post("/browser/sessions", json={"labels": {"caller": "tests"}})
    assert response.status_code == 201, response.text
    return str(response.json()["sessionId"])


def call(svc: ServiceProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return svc.client.request(method, path, **kwargs)


def navigate(svc: ServiceProcess, session: str, url: str, **fields: Any) -> dict[str, Any]:
    response = svc.client.post(f"/browser/sessions/{session}/navigate", json={"url": url, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def act(svc: ServiceProcess, session: str, **fields: Any) -> httpx.Response:
    return svc.client.post(f"/browser/sessions/{session}/action", json=fields)


def text_of(svc: ServiceProcess, session: str, selector: str) -> str:
    # wait_for plus content: the test reads what the page shows, as a caller would.
    html = svc.client.get(f"/browser/sessions/{session}/content").text
    start = html.index(f'id="{selector}"')
    return html[html.index(">", start) + 1 : html.index("<", start)]


def assert_invalid(response: httpx.Response, field: str, rule: str) -> None:
    """A 422 whose first detail names ``field`` and ``rule``."""
    assert response.status_code == 422, response.text
    detail = response.json()["details"][0]
    assert (detail["field"], detail["rule"]) == (field, rule), detail


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# --- sessions ----------------------------------------------------------------------------


def test_create_get_list_and_labels(svc: ServiceProcess, session: str) -> None:
    info = svc.client.get(f"/browser/sessions/{session}").json()
    assert info["sessionId"].startswith("bs-") and info["sessionId"] == session
    assert info["device"] == "desktop"
    assert info["viewport"] == {"width": 1280, "height": 720}
    assert info["labels"] == {"caller": "tests"}
    assert info["idleTimeoutS"] == 300 and info["maxLifetimeS"] == 1800
    listed = svc.client.get("/browser/sessions").json()["sessions"]
    assert session in [s["sessionId"] for s in listed]


def test_session_ids_are_generated_not_taken_from_input(svc: ServiceProcess) -> None:
    response = svc.client.post("/browser/sessions", json={"sessionId": "mine"})
    assert response.status_code == 422
    assert response.json()["details"][0] == {
        "field": "sessionId",
        "rule": "extra_forbidden",
        "message": "unknown field",
    }


def test_unknown_session_is_404_everywhere(svc: ServiceProcess) -> None:
    for method, path in [
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/content"),
        ("GET", "/tabs"),
        ("GET", "/screenshot"),
    ]:
        response = call(svc, method, f"/browser/sessions/bs-00000000000000000000{path}")
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"] == "not_found"


def test_browser_api_requires_the_bearer_token(svc: ServiceProcess, session: str) -> None:
    response = httpx.get(f"{svc.base_url}/browser/sessions/{session}")
    assert response.status_code == 401


# --- navigation and content ------------------------------------------------------------


@pytest.mark.parametrize("wait_until", ["load", "domcontentloaded", "networkidle", "commit"])
def test_navigate_returns_url_status_and_title(
    svc: ServiceProcess, session: str, pages: PageServer, wait_until: str
) -> None:
    result = navigate(svc, session, pages.base + "/form", waitUntil=wait_until)
    assert result["url"] == pages.base + "/form"
    assert result["status"] == 200
    assert result["tabId"] == "t1"
    if wait_until != "commit":
        assert result["title"] == "Form"


def test_a_missing_page_is_a_result_not_an_error(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    assert navigate(svc, session, pages.base + "/nothing-here")["status"] == 404


def test_content_is_the_page_html(svc: ServiceProcess, session: str, pages: PageServer) -> None:
    navigate(svc, session, pages.base + "/form")
    response = svc.client.get(f"/browser/sessions/{session}/content")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<button id="go"' in response.text


def test_navigation_timeout_is_504(svc: ServiceProcess, session: str, pages: PageServer) -> None:
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate",
        json={"url": pages.base + "/slow?s=2", "timeoutMs": 300},
    )
    assert response.status_code == 504, response.text
    assert response.json()["error"] == "navigation_timeout"
    assert "timeoutMs" in response.json()["message"]


def test_about_blank_is_allowed(svc: ServiceProcess, session: str) -> None:
    assert navigate(svc, session, "about:blank")["url"] == "about:blank"


def test_a_download_is_refused_and_said_so(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate", json={"url": pages.base + "/download"}
    )
    # Chromium turns the navigation into a download, which it cancels as it starts.
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "navigation_failed"
    assert "is a download, not a page: browser sessions keep no downloads" in response.text
    for directory in agent_dirs(svc.state_dir):
        assert not [p for p in directory.rglob("*") if p.is_file() and p.stat().st_size]


# --- tabs --------------------------------------------------------------------------------


def test_tabs_open_list_use_and_close(svc: ServiceProcess, session: str, pages: PageServer) -> None:
    base = f"/browser/sessions/{session}"
    opened = svc.client.post(f"{base}/tabs")
    assert opened.status_code == 201, opened.text
    tab = opened.json()["tabId"]
    assert tab != "t1"
    assert navigate(svc, session, pages.base + "/device", tabId=tab)["tabId"] == tab
    listed = svc.client.get(f"{base}/tabs").json()
    assert {t["tabId"] for t in listed["tabs"]} >= {"t1", tab}
    assert listed["current"] == tab
    assert "<title>Device</title>" in svc.client.get(f"{base}/content?tabId={tab}").text
    assert svc.client.delete(f"{base}/tabs/{tab}").status_code == 204
    for response in (
        svc.client.delete(f"{base}/tabs/{tab}"),
        svc.client.get(f"{base}/content", params={"tabId": tab}),
        svc.client.post(f"{base}/navigate", json={"url": pages.base + "/form", "tabId": tab}),
        svc.client.post(f"{base}/action", json={"action": "hover", "selector": "p", "tabId": tab}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "tab_not_found"
    assert tab not in [t["tabId"] for t in svc.client.get(f"{base}/tabs").json()["tabs"]]


def test_a_popup_becomes_a_tab(svc: ServiceProcess, session: str, pages: PageServer) -> None:
    base = f"/browser/sessions/{session}"
    navigate(svc, session, pages.base + "/popup", tabId="t1")
    before = {t["tabId"] for t in svc.client.get(f"{base}/tabs").json()["tabs"]}
    assert act(svc, session, action="click", selector="#open", tabId="t1").status_code == 200

    def new_tab() -> set[str]:
        return {t["tabId"] for t in svc.client.get(f"{base}/tabs").json()["tabs"]} - before

    (popup,) = wait_for(new_tab, what="the popup's tab")
    svc.client.delete(f"{base}/tabs/{popup}")


# --- actions -----------------------------------------------------------------------------


@pytest.fixture
def form(svc: ServiceProcess, session: str, pages: PageServer) -> str:
    navigate(svc, session, pages.base + "/form", tabId="t1")
    return session


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_fill_then_click(svc: ServiceProcess, form: str) -> None:
    ok(act(svc, form, action="fill", selector="#name", value="alice"))
    done = ok(act(svc, form, action="click", selector="#go"))
    assert done["action"] == "click" and done["tabId"] == "t1"
    assert text_of(svc, form, "out") == "clicked:alice"


def test_type_appends_key_by_key(svc: ServiceProcess, form: str) -> None:
    ok(act(svc, form, action="fill", selector="#name", value="bo"))
    ok(act(svc, form, action="type", selector="#name", text="b!", delayMs=5))
    ok(act(svc, form, action="click", selector="#go"))
    assert text_of(svc, form, "out") == "clicked:bob!"


def test_press_sends_a_key(svc: ServiceProcess, form: str) -> None:
    ok(act(svc, form, action="press", selector="#keys", key="Enter"))
    assert text_of(svc, form, "out") == "key:Enter"


def test_hover(svc: ServiceProcess, form: str) -> None:
    ok(act(svc, form, action="hover", selector="#hover"))
    assert text_of(svc, form, "hover") == "hovered"


def test_select_returns_the_selected_values(svc: ServiceProcess, form: str) -> None:
    done = ok(act(svc, form, action="select", selector="#color", values=["g"]))
    assert done["result"] == {"selected": ["g"]}


def test_check_and_uncheck(svc: ServiceProcess, form: str) -> None:
    assert ok(act(svc, form, action="check", selector="#agree"))["result"] == {"checked": True}
    done = ok(act(svc, form, action="check", selector="#agree", checked=False))
    assert done["result"] == {"checked": False}


def test_scroll_by_delta_and_into_view(svc: ServiceProcess, form: str) -> None:
    done = ok(act(svc, form, action="scroll", deltaY=600))
    assert done["result"]["scrollY"] == 600
    ok(act(svc, form, action="scroll", selector="#bottom"))
    after = ok(act(svc, form, action="scroll", deltaY=1))
    assert after["result"]["scrollY"] > 2000


def test_wait_for_a_selector_and_a_load_state(svc: ServiceProcess, form: str) -> None:
    ok(act(svc, form, action="click", selector="#later"))
    ok(act(svc, form, action="wait_for", selector="#late", timeoutMs=5000))
    ok(act(svc, form, action="wait_for", selector="#late", state="attached"))
    ok(act(svc, form, action="wait_for", state="load"))


def test_a_selector_matching_nothing_is_409_within_the_timeout(
    svc: ServiceProcess, form: str
) -> None:
    response = act(svc, form, action="click", selector="#absent", timeoutMs=300)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "element_timeout"
    assert body["details"][0]["field"] == "selector" and body["details"][0]["rule"] == "timeout"


def test_agent_side_rules_name_field_and_rule(svc: ServiceProcess, form: str) -> None:
    for fields, field, rule in [
        ({"action": "press", "selector": "#keys", "key": "NoSuchKey"}, "key", "unknown_key"),
        ({"action": "click", "selector": "div >>> ["}, "selector", "invalid_selector"),
    ]:
        response = act(svc, form, **fields)
        assert_invalid(response, field, rule)


# --- screenshots ---------------------------------------------------------------------------


def test_screenshot_is_a_png_of_the_viewport_or_the_full_page(
    svc: ServiceProcess, form: str
) -> None:
    shot = svc.client.get(f"/browser/sessions/{form}/screenshot")
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/png"
    assert png_size(shot.content) == (1280, 720)
    full = svc.client.get(f"/browser/sessions/{form}/screenshot?fullPage=true&tabId=t1")
    assert full.status_code == 200
    assert png_size(full.content)[1] > 5000


# --- devices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "width", "agent"),
    [("iPhone 13", 390, "iPhone"), ("mobile", 412, "Android"), ("Desktop Chrome", 1280, "Windows")],
)
def test_device_emulation_changes_viewport_and_user_agent(
    svc: ServiceProcess, pages: PageServer, device: str, width: int, agent: str
) -> None:
    created = svc.client.post("/browser/sessions", json={"device": device})
    assert created.status_code == 201, created.text
    info = created.json()
    try:
        assert info["viewport"]["width"] == width
        assert agent in info["userAgent"]
        navigate(svc, info["sessionId"], pages.base + "/device")
        shown = text_of(svc, info["sessionId"], "w")
        assert shown.startswith(f"{width}x")
    finally:
        svc.client.delete(f"/browser/sessions/{info['sessionId']}")
    assert agent in pages.last_user_agent


# --- the controller's own port stays unreachable, even with private networks allowed ------


def test_the_controllers_port_is_refused_even_when_private_networks_are_allowed(
    svc: ServiceProcess, session: str
) -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        response = svc.client.post(
            f"/browser/sessions/{session}/navigate",
            json={"url": f"http://{host}:{svc.port}/health"},
        )
        assert response.status_code == 403, (host, response.text)
        assert response.json()["error"] == "destination_forbidden"


def test_a_redirect_to_the_controller_is_refused(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    target = f"http://127.0.0.1:{svc.port}/health"
    response = svc.client.post(
        f"/browser/sessions/{session}/navigate",
        json={"url": f"{pages.base}/redirect?to={target}"},
    )
    assert response.status_code == 403, response.text
    assert pages.hits("/redirect") >= 1


def test_a_pages_fetch_to_the_controller_is_blocked(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    target = f"http://127.0.0.1:{svc.port}/health"
    navigate(svc, session, f"{pages.base}/fetch?to={target}")

    def title() -> str | None:
        tabs = svc.client.get(f"/browser/sessions/{session}/tabs").json()["tabs"]
        t1 = next(t for t in tabs if t["tabId"] == "t1")
        return t1["title"] if t1["title"] != "pending" else None

    assert wait_for(title, what="the fetch to end") == "blocked"


def test_the_test_pages_fetch_works_when_allowed(
    svc: ServiceProcess, session: str, pages: PageServer
) -> None:
    # The control of the test above: the same page fetching an allowed URL succeeds.
    navigate(svc, session, f"{pages.base}/fetch?to={pages.base}/form")

    def title() -> str | None:
        tabs = svc.client.get(f"/browser/sessions/{session}/tabs").json()["tabs"]
        t1 = next(t for t in tabs if t["tabId"] == "t1")
        return t1["title"] if t1["title"] != "pending" else None

    assert wait_for(title, what="the fetch to end") == "fetched:200"


# --- bad input: a 4xx naming the field and the rule, never a 500 ---------------------------

BAD_SESSIONS = [
    ({"device": 5}, "device", "string_type"),
    ({"device": ""}, "device", "string_too_short"),
    ({"device": "Nokia 3310"}, "device", "unknown_device"),
    ({"idleTimeoutS": 0}, "idleTimeoutS", "greater_than_equal"),
    ({"idleTimeoutS": "60"}, "idleTimeoutS", "int_type"),
    ({"idleTimeoutS": 10**6}, "idleTimeoutS", "less_than_equal"),
    ({"maxLifetimeS": 10**6}, "maxLifetimeS", "less_than_equal"),
    ({"labels": {"": "x"}}, "labels", "string_too_short"),
    ({"labels": ["a"]}, "labels", "dict_type"),
    ({"bogus": 1}, "bogus", "extra_forbidden"),
]


@pytest.mark.parametrize(("body", "field", "rule"), BAD_SESSIONS)
def test_bad_session_requests(svc: ServiceProcess, body: Any, field: str, rule: str) -> None:
    response = svc.client.post("/browser/sessions", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["details"][0]
    assert detail["field"].split(".")[0] == field and detail["rule"] == rule


def test_unknown_device_lists_the_accepted_names(svc: ServiceProcess) -> None:
    response = svc.client.post("/browser/sessions", json={"device": "Nokia 3310"})
    message = response.json()["details"][0]["message"]
    for name in ("desktop", "mobile", "iPhone 13", "Pixel 7"):
        assert name in message


BAD_NAVIGATIONS = [
    ({"url": "file:///etc/passwd"}, "url", "scheme_forbidden"),
    ({"url": "chrome://version"}, "url", "scheme_forbidden"),
    ({"url": "about:config"}, "url", "scheme_forbidden"),
    ({"url": "data:text/html,<p>x"}, "url", "scheme_forbidden"),
    ({"url": "javascript:alert(1)"}, "url", "scheme_forbidden"),
    ({"url": "view-source:http://example.com/"}, "url", "scheme_forbidden"),
    ({"url": "blob:http://example.com/x"}, "url", "scheme_forbidden"),
    ({"url": "ftp://example.com/"}, "url", "scheme_forbidden"),
    ({"url": "http://user:pw@example.com/"}, "url", "credentials_forbidden"),
    ({"url": "http:///nohost"}, "url", "url_invalid"),
    ({"url": "example.com"}, "url", "url_invalid"),
    ({"url": " http://example.com"}, "url", "url_invalid"),
    ({}, "url", "missing"),
    ({"url": 1}, "url", "string_type"),
    ({"url": "about:blank", "waitUntil": "soon"}, "waitUntil", "literal_error"),
    ({"url": "about:blank", "timeoutMs": 0}, "timeoutMs", "greater_than_equal"),
    ({"url": "about:blank", "timeoutMs": 120_001}, "timeoutMs", "less_than_equal"),
    ({"url": "about:blank", "tabId": "x"}, "tabId", "string_pattern_mismatch"),
]


@pytest.mark.parametrize(("body", "field", "rule"), BAD_NAVIGATIONS)
def test_bad_navigations(
    svc: ServiceProcess, session: str, body: Any, field: str, rule: str
) -> None:
    response = svc.client.post(f"/browser/sessions/{session}/navigate", json=body)
    assert_invalid(response, field, rule)


BAD_ACTIONS = [
    ({}, "action", "missing"),
    ({"action": "clack", "selector": "a"}, "action", "unknown_action"),
    ({"action": "click"}, "selector", "missing"),
    ({"action": "click", "selector": ""}, "selector", "string_too_short"),
    ({"action": "click", "selector": "a", "button": "up"}, "button", "literal_error"),
    ({"action": "click", "selector": "a", "clickCount": 9}, "clickCount", "less_than_equal"),
    ({"action": "fill", "selector": "a"}, "value", "missing"),
    ({"action": "type", "selector": "a", "text": ""}, "text", "string_too_short"),
    ({"action": "press", "selector": "a"}, "key", "missing"),
    ({"action": "select", "selector": "a", "values": []}, "values", "too_short"),
    ({"action": "select", "selector": "a", "values": "g"}, "values", "list_type"),
    ({"action": "check", "selector": "a", "checked": "yes"}, "checked", "bool_type"),
    ({"action": "scroll"}, "selector", "missing"),
    ({"action": "scroll", "selector": "a", "deltaY": 5}, "deltaY", "exclusive"),
    ({"action": "wait_for"}, "selector", "missing"),
    ({"action": "wait_for", "selector": "a", "state": "load"}, "state", "element_state"),
    ({"action": "wait_for", "state": "visible"}, "state", "load_state"),
    ({"action": "hover", "selector": "a", "timeoutMs": -1}, "timeoutMs", "greater_than_equal"),
    ({"action": "hover", "selector": "a", "extra": 1}, "extra", "extra_forbidden"),
]


@pytest.mark.parametrize(("body", "field", "rule"), BAD_ACTIONS)
def test_bad_actions(svc: ServiceProcess, session: str, body: Any, field: str, rule: str) -> None:
    response = svc.client.post(f"/browser/sessions/{session}/action", json=body)
    assert_invalid(response, field, rule)


@pytest.mark.parametrize("path", ["/navigate", "/action"])
def test_a_body_that_is_not_json(svc: ServiceProcess, session: str, path: str) -> None:
    response = svc.client.post(f"/browser/sessions/{session}{path}", content=b"{nope")
    assert_invalid(response, "body", "json_invalid")


@pytest.mark.parametrize(
    ("query", "field", "rule"),
    [
        ("/content?tabId=zz", "tabId", "string_pattern_mismatch"),
        ("/screenshot?fullPage=maybe", "fullPage", "bool_parsing"),
    ],
)
def test_bad_query_parameters(
    svc: ServiceProcess, session: str, query: str, field: str, rule: str
) -> None:
    response = svc.client.get(f"/browser/sessions/{session}{query}")
    assert_invalid(response, field, rule)


def test_a_page_cannot_open_tabs_without_end(svc: ServiceProcess, pages: PageServer) -> None:
    created = svc.client.post("/browser/sessions")
    assert created.status_code == 201, created.text
    sid = created.json()["sessionId"]
    try:
        navigate(svc, sid, pages.base + "/flood")
        # Opening 60 windows takes Chromium 156 about 7 s here, past the 5 s default.
        ok(act(svc, sid, action="click", selector="#flood", timeoutMs=60_000))

        def open_tabs() -> int:
            return len(svc.client.get(f"/browser/sessions/{sid}/tabs").json()["tabs"])

        wait_for(lambda: open_tabs() == 32, what="the tab cap to be reached")
        refused = svc.client.post(f"/browser/sessions/{sid}/tabs")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "tab_limit"
        assert open_tabs() == 32
    finally:
        svc.client.delete(f"/browser/sessions/{sid}")


def test_sessions_start_whatever_the_services_umask() -> None:
    # make run's first start (generating the token) once left the service with umask
    # 077: the agents' code and launcher directories were then unreadable by their uids.
    strict = ServiceProcess(
        prefix=("/bin/sh", "-c", 'umask 077; exec "$@"', "sh"), max_browser_sessions="1"
    )
    try:
        created = strict.client.post("/browser/sessions")
        assert created.status_code == 201, created.text
        strict.client.delete(f"/browser/sessions/{created.json()['sessionId']}")
    finally:
        strict.stop()
