"""A real file service on loopback for upload tests: stores what it receives."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import threading
from dataclasses import dataclass, field


@dataclass
class Received:
    filename: str
    content: bytes
    content_type: str
    public: str
    authorization: str | None


@dataclass
class FileService:
    """``POST /upload`` (multipart: file, public); answers 201 with the stored file's URL.

    A file named ``fail-*`` is answered 500, to test that one failure stays local.
    """

    received: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> None:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                parts = {
                    p.get_param("name", header="content-disposition"): p
                    for p in message.iter_parts()
                }
                upload = parts["file"]
                item = Received(
                    filename=str(upload.get_filename()),
                    content=upload.get_payload(decode=True),
                    content_type=upload.get_content_type(),
                    public=parts["public"].get_payload(decode=True).decode(),
                    authorization=self.headers.get("Authorization"),
                )
                service.received.append(item)
                status = 500 if item.filename.startswith("fail-") else 201
                answer = json.dumps({"url": f"http://files.test/{item.filename}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
