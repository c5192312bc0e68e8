"""Web pages for the browser tests, served on loopback by the test process itself.

Each request is recorded, so a test can prove that a refused destination was never
reached (not merely that the browser reported an error).  ``python3 pages.py PORT``
serves the same pages on every address (the e2e tier runs it in a pod), with the
request log at ``/__requests`` (JSON).  Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

FORM = """<!doctype html>
<html><head><title>Form</title>
<style>#tall { height: 5000px; } #bottom { margin-top: 4000px; }</style></head>
<body>
<input id="name" value="">
<textarea id="notes"></textarea>
<select id="color"><option value="r">Red</option><option value="g">Green</option></select>
<input id="agree" type="checkbox">
<button id="go" onclick="document.getElementById('out').textContent =
  'clicked:' + document.getElementById('name').value">Go</button>
<div id="hover" onmouseover="this.textContent = 'hovered'">hover me</div>
<input id="keys" onkeydown="document.getElementById('out').textContent = 'key:' + event.key">
<p id="out"></p>
<button id="later" onclick="setTimeout(() => {
  const p = document.createElement('p'); p.id = 'late'; p.textContent = 'late';
  document.body.appendChild(p); }, 200)">later</button>
<div id="tall"><p id="bottom">bottom</p></div>
</body></html>"""

DEVICE = """<!doctype html><html><head><title>Device</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><p id="w"></p><script>
document.getElementById('w').textContent = window.innerWidth + 'x' + window.innerHeight;
</script></body></html>"""

POPUP = """<!doctype html><html><head><title>Opener</title></head>
<body><a id="open" href="/form" target="_blank">open</a></body></html>"""


FLOOD = """<!doctype html><html><head><title>Flood</title></head>
<body><button id="flood" onclick="for (let i = 0; i < 60; i++) window.open('about:blank')">
flood</button></body></html>"""


def fetch_page(target: str) -> str:
    """A page that fetches ``target`` and writes what happened into its title."""
    return f"""<!doctype html><html><head><title>pending</title></head><body><script>
fetch({target!r}).then(r => {{ document.title = 'fetched:' + r.status; }})
  .catch(e => {{ document.title = 'blocked'; }});
</script></body></html>"""


class PageServer:
    """A threaded HTTP server on 127.0.0.1 with a few fixed pages and a request log."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[str] = []
        self.last_user_agent = ""
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append(self.path)
                    server.last_user_agent = self.headers.get("User-Agent", "")
                server.handle(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def hits(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if path.startswith(prefix))

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path == "/__requests":
            with self.lock:
                log = json.dumps(self.requests)
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(log)))
            request.end_headers()
            request.wfile.write(log.encode())
        elif url.path == "/ws":
            self.accept_websocket(request)
        elif url.path == "/slow":
            time.sleep(float(query.get("s", ["2"])[0]))
            self.send(request, 200, "<title>slow</title>")
        elif url.path == "/redirect":
            request.send_response(302)
            request.send_header("Location", query["to"][0])
            request.send_header("Content-Length", "0")
            request.end_headers()
        elif url.path == "/fetch":
            self.send(request, 200, fetch_page(query["to"][0]))
        elif url.path == "/image":  # a subresource the page's load waits for
            src = html.escape(query["src"][0])
            self.send(request, 200, f'<title>image</title><img src="{src}">')
        elif url.path == "/download":
            body = b"downloaded bytes"
            request.send_response(200)
            request.send_header("Content-Type", "application/octet-stream")
            request.send_header("Content-Disposition", 'attachment; filename="f.bin"')
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        else:
            pages = {"/form": FORM, "/device": DEVICE, "/popup": POPUP, "/flood": FLOOD}
            page = pages.get(url.path)
            if page is None:
                self.send(request, 404, "<title>missing</title>")
            else:
                self.send(request, 200, page)

    @staticmethod
    def accept_websocket(request: BaseHTTPRequestHandler) -> None:
        """Complete a WebSocket handshake, then hold the connection until the client goes."""
        key = request.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        request.send_response(101)
        request.send_header("Upgrade", "websocket")
        request.send_header("Connection", "Upgrade")
        request.send_header("Sec-WebSocket-Accept", accept)
        request.end_headers()
        request.wfile.flush()
        request.close_connection = True
        with contextlib.suppress(OSError):
            while request.rfile.read1(4096):
                pass

    @staticmethod
    def send(request: BaseHTTPRequestHandler, status: int, html: str) -> None:
        body = html.encode()
        request.send_response(status)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    PageServer("0.0.0.0", int(sys.argv[1])).thread.join()
