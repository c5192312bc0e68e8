"""The server's own limits on a real service: request heads, stalled answers, connections."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support import ServiceProcess, wait_for


@pytest.fixture(scope="module")
def strict() -> Iterator[ServiceProcess]:
    with ServiceProcess(header_timeout_s="0.5", write_timeout_s="1", max_connections="32") as svc:
        yield svc


def connect(svc: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", svc.port), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset), waiting for it up to 10 s."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def open_descriptors(svc: ServiceProcess) -> int:
    return len(os.listdir(f"/proc/{svc.proc.pid}/fd"))


def metric(svc: ServiceProcess, name: str) -> float:
    for line in svc.client.get("/metrics").text.splitlines():
        if line.split(" ", 1)[0] == name:
            return float(line.split()[1])
    return 0.0


def test_a_connection_that_sends_no_head_in_time_is_dropped(strict: ServiceProcess) -> None:
    with connect(strict) as silent, connect(strict) as dripping:
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\n":
            try:
                dripping.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
        assert closed_by_server(silent) and closed_by_server(dripping)
        assert time.monotonic() - started < 5
    dropped = 'sandbox_connections_dropped_total{reason="header_timeout"}'
    assert metric(strict, dropped) >= 2


@pytest.mark.parametrize(
    "headers",
    [b"X-Padding: " + b"a" * 200_000 + b"\r\n", b"a: b\r\n" * 40_000],
    ids=["one long header", "many short headers"],
)
def test_a_head_larger_than_any_request_needs_is_431(
    strict: ServiceProcess, headers: bytes
) -> None:
    dropped = 'sandbox_connections_dropped_total{reason="head_too_large"}'
    before = metric(strict, dropped)
    reply = b""
    with connect(strict) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers)
            while chunk := sock.recv(65536):
                reply += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all of it was sent: the answer may be lost with it
    assert metric(strict, dropped) == before + 1
    if reply:
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
        assert b'"error": "head_too_large"' in reply
    assert strict.client.get("/health").status_code == 200


def test_an_answer_nobody_reads_is_dropped_after_the_write_timeout(strict: ServiceProcess) -> None:
    # An answer larger than what the kernel's socket buffers take: ~10 MB of inline file.
    code = b"{\"code\": \"open('f', 'wb').write(bytes(7_500_000))\"}"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", strict.port))
        read_nothing_then_count(sock, strict, code)


def read_nothing_then_count(sock: socket.socket, strict: ServiceProcess, code: bytes) -> None:
    sock.sendall(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + strict.token.encode()
        + b"\r\nContent-Length: "
        + str(len(code)).encode()
        + b"\r\n\r\n"
        + code
    )
    dropped = 'sandbox_connections_dropped_total{reason="write_timeout"}'
    wait_for(lambda: metric(strict, dropped) >= 1, timeout_s=30, what="the stalled answer dropped")
    received = 0
    try:
        while chunk := sock.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        pass
    assert received < 7_500_000, "the answer was cut, not delivered"


def test_connections_beyond_the_limit_evict_the_idle_not_the_working() -> None:
    # A head timeout far longer than the test, so that eviction is the only way out.
    with ServiceProcess(header_timeout_s="120", max_connections="32") as svc:
        evict_the_idle(svc)


def evict_the_idle(strict: ServiceProcess) -> None:
    before = open_descriptors(strict)
    body = b'{"code": "print(2 + 2)"}'
    working = connect(strict)  # its head sent, its body not yet: at work, never evicted
    working.sendall(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + strict.token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body[:5]
    )
    idle = [connect(strict) for _ in range(200)]
    try:
        # Each connection beyond 32 evicted the one that waited longest for its head.  The
        # count first: until the server has accepted them all, few descriptors prove nothing.
        evicted = 'sandbox_connections_dropped_total{reason="evicted"}'
        wait_for(
            lambda: metric(strict, evicted) >= 160,
            what="the connections beyond the limit evicted",
            state=lambda: metric(strict, evicted),
        )
        wait_for(
            lambda: open_descriptors(strict) <= before + 40,
            what="the descriptors of evicted connections closed",
            state=lambda: open_descriptors(strict),
        )
        assert strict.client.get("/health").status_code == 200
        assert strict.execute("print(2 + 2)")["stdout"] == "4\n"
        working.sendall(body[5:])
        answer = working.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    finally:
        working.close()
        for sock in idle:
            sock.close()


def test_a_streamed_run_outlives_the_bodys_deadline() -> None:
    # The body must arrive within REQUEST_BODY_TIMEOUT_S; the answer may take as long as
    # the run does, and a streamed one waits for the disconnect all that time.
    with ServiceProcess(request_body_timeout_s="1") as svc:
        code = "import time\nprint('one', flush=True)\ntime.sleep(2.5)\nprint('two')"
        with svc.client.stream(
            "POST", "/execute", json={"code": code}, headers={"Accept": "text/event-stream"}
        ) as response:
            lines = list(response.iter_lines())
    assert "event: done" in lines
    assert lines.count("event: stdout") == 2
