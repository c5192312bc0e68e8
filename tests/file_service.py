"""A real file service for upload tests: stores what it receives, and shows it.

    POST <any path>      multipart (file, public); 201 with the stored file's URL
                         (a file named ``fail-*`` is answered 500: one failure stays local)
    GET  /received       what arrived so far, as JSON (content base64)
    DELETE /received     forget it

In process (``FileService``, on loopback) for the integration tier; standalone
(``python3 file_service.py PORT``, standard library only) in a pod of the e2e cluster,
read from outside by ``RemoteFiles``.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import http.server
import json
import sys
import threading
from dataclasses import asdict, dataclass, field


@dataclass
class Received:
    filename: str
    content: bytes
    content_type: str
    public: str
    authorization: str | None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def handler_for(store: list[Received]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            entries = [
                {**asdict(r), "content": base64.b64encode(r.content).decode()} for r in store
            ]
            self.answer(200, entries)

        def do_DELETE(self) -> None:
            store.clear()
            self.answer(200, [])

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            parts = {
                p.get_param("name", header="content-disposition"): p for p in message.iter_parts()
            }
            upload = parts["file"]
            item = Received(
                filename=str(upload.get_filename()),
                content=upload.get_payload(decode=True),
                content_type=upload.get_content_type(),
                public=parts["public"].get_payload(decode=True).decode(),
                authorization=self.headers.get("Authorization"),
            )
            store.append(item)
            status = 500 if item.filename.startswith("fail-") else 201
            self.answer(status, {"url": f"http://files.test/{item.filename}"})

    return Handler


@dataclass
class FileService:
    """The file service on a loopback port of this host."""

    store: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[Received]:
        return list(self.store)

    def clear(self) -> None:
        self.store.clear()

    def start(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self.store))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def main() -> None:
    port = int(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler_for([]))
    server.serve_forever()


if __name__ == "__main__":
    main()
