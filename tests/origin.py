"""A small origin server for the network tests: it answers who was asked for, or redirects.

``GET /redirect?to=URL`` answers 302 to URL; any other GET answers ``hello <Host>`` (the
name and port the client asked for, as the proxy passed it on); a POST answers ``got
<its body>``.  Used on loopback by
the integration tier and the bench, and on the pod bridge's address by the e2e tier.
"""

from __future__ import annotations

import http.server
import ssl
import threading


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"hello " + self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = b"got " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def start_origin(
    host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> http.server.ThreadingHTTPServer:
    """The server, serving on a thread of its own; ``shutdown()`` and ``server_close()`` it."""
    server = http.server.ThreadingHTTPServer((host, port), Origin)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
