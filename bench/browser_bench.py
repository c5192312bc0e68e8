"""Benchmark: browser sessions through the controller against direct Playwright calls.

Prints p50/p90 of, each beside a baseline measured in the same run:
  - session create (warm pool)   vs  new_context + new_page on a running browser,
                                     and a cold launch + context + page (what the pool hides)
  - navigate + content of a small loopback page   vs  page.goto + page.content()
  - click                                          vs  locator.click()
Figures, not assertions: the machines are shared and noisy.

    .venv/bin/python bench/browser_bench.py [--creates 15] [--requests 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the shared service launcher is in tests/

from tests.support import ServiceProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGE = b"""<!doctype html><html><head><title>bench</title></head><body>
<p id="out">0</p><button id="b" onclick="out.textContent = +out.textContent + 1">+</button>
</body></html>"""
BASELINE_FLAGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"p50 {statistics.median(ordered):7.1f} ms  p90 {p90:7.1f} ms  (n={len(ordered)})"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


class Page(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


class Controller:
    """The service with browser sessions on (tests.support.ServiceProcess) and a warm agent."""

    def __init__(self) -> None:
        self.service = ServiceProcess(
            browser_allow_private_networks="true",
            browser_warm_agents="1",
            max_browser_sessions="4",
        )
        self.http = self.service.client

    def wait(self, ready: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"controller not {what} in time")

    def wait_warm(self) -> None:
        self.wait(lambda: self.http.get("/browser/sessions").json()["warmAgents"] >= 1, "warm")

    def post(self, path: str, body: object) -> httpx.Response:
        response = self.http.post(path, json=body)
        if response.status_code >= 300:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        return response

    def stop(self) -> None:
        self.service.stop()


def controller_figures(url: str, creates: int, requests: int) -> dict[str, list[float]]:
    ctl = Controller()
    try:
        create: list[float] = []
        for _ in range(creates):
            ctl.wait_warm()  # not measured: the pool refills between two creations
            start = time.perf_counter()
            sid = ctl.post("/browser/sessions", {}).json()["sessionId"]
            create.append((time.perf_counter() - start) * 1000)
            ctl.http.delete(f"/browser/sessions/{sid}")
        ctl.wait_warm()
        sid = ctl.post("/browser/sessions", {}).json()["sessionId"]
        base = f"/browser/sessions/{sid}"

        def navigate_and_read() -> None:
            ctl.post(f"{base}/navigate", {"url": url})
            if b"bench" not in ctl.http.get(f"{base}/content").content:
                raise SystemExit("content did not come back")

        for _ in range(5):
            navigate_and_read()
        navigate = [timed(navigate_and_read) for _ in range(requests)]
        click_body = {"action": "click", "selector": "#b"}
        for _ in range(5):
            ctl.post(f"{base}/action", click_body)
        click = [timed(lambda: ctl.post(f"{base}/action", click_body)) for _ in range(requests)]
        return {"create": create, "navigate": navigate, "click": click}
    finally:
        ctl.stop()


async def playwright_figures(url: str, creates: int, requests: int) -> dict[str, list[float]]:
    async with async_playwright() as pw:
        cold: list[float] = []
        for _ in range(min(5, creates)):
            start = time.perf_counter()
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BASELINE_FLAGS)
            context = await browser.new_context()
            await context.new_page()
            cold.append((time.perf_counter() - start) * 1000)
            await browser.close()
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BASELINE_FLAGS)
        warm: list[float] = []
        for _ in range(creates):
            start = time.perf_counter()
            context = await browser.new_context()
            await context.new_page()
            warm.append((time.perf_counter() - start) * 1000)
            await context.close()
        page = await (await browser.new_context()).new_page()
        navigate: list[float] = []
        for i in range(requests + 5):
            start = time.perf_counter()
            await page.goto(url)
            await page.content()
            if i >= 5:
                navigate.append((time.perf_counter() - start) * 1000)
        click: list[float] = []
        for i in range(requests + 5):
            start = time.perf_counter()
            await page.locator("#b").first.click()
            if i >= 5:
                click.append((time.perf_counter() - start) * 1000)
        await browser.close()
        return {"cold": cold, "create": warm, "navigate": navigate, "click": click}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=15)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/page"
    try:
        ours = controller_figures(url, args.creates, args.requests)
        direct = asyncio.run(playwright_figures(url, args.creates, args.requests))
    finally:
        server.shutdown()
    rows = [
        ("session create (warm pool)", ours["create"], "new_context+new_page", direct["create"]),
        ("  (what the pool hides)", None, "launch+context+page", direct["cold"]),
        ("navigate+content", ours["navigate"], "goto+content", direct["navigate"]),
        ("click", ours["click"], "locator.click", direct["click"]),
    ]
    for label, mine, base_label, base in rows:
        left = f"{label:28s} {percentiles(mine)}" if mine else f"{label:28s} {'':36s}"
        ratio = f"  ratio {statistics.median(mine) / statistics.median(base):.2f}" if mine else ""
        print(f"{left}   | {base_label:22s} {percentiles(base)}{ratio}")


if __name__ == "__main__":
    main()
