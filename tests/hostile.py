"""What the hostile-caller tests attack with and how they measure the harm to others.

``HostileServer`` is an HTTP server that misbehaves on purpose: a file service or an
ask-callback whose replies are decompression bombs, drip a byte at a time, never end or
never come; pages whose attachments never end.  ``Monitor`` samples the service while
an attack runs (``/health``'s latency, the controller's resident memory); ``Victim`` is
an honest caller running ``print(2+2)`` one after another.  The server and the victim
run in processes of their own (``python -m tests.hostile``), so that neither the
attack's bytes nor its threads in the test's process slow the victim's clock.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT, ServiceProcess, free_port, wait_for

MIB = 1024 * 1024
REPORT: list[Figures] = []
"""Every attack's figures in this run, printed at its end (tests/integration/conftest.py)."""
BOMB_MIB = 1024
"""What each decompression bomb inflates to: far more than the controller may hold."""


def bomb(wbits: int) -> bytes:
    """BOMB_MIB of zeros, compressed (gzip: wbits 31; zlib's deflate: 15)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MIB)
    return b"".join(packer.compress(zeros) for _ in range(BOMB_MIB)) + packer.flush()


@dataclass
class Served:
    """What the hostile server did: requests by path, and bytes sent by path."""

    requests: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    open: int = 0


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gives up (the service, cutting a reply short) is the point


class HostileServer:
    """Misbehaving replies, chosen by path:

    POST /reply/gzip, /reply/deflate   a bomb (BOMB_MIB when inflated), as that encoding
    POST /reply/br, /reply/zstd        bytes labelled with an encoding nobody asked for
    POST /reply/drip                   a byte every 0.2 s, for as long as it is read
    POST /reply/endless                bytes at full speed, for as long as they are read
    POST /reply/silent                 no answer at all
    POST /reply/deep                   JSON nested deeper than any parser goes
    POST /reply/ask                    each of those in turn (an ask-callback's replies)
    GET  /page/endless-download        an attachment that never ends
    GET  /page/many-downloads          a page that starts a hundred of those
    GET  /page/store                   a page that fills its site storage (IndexedDB)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.served = Served()
        self.lock = threading.Lock()
        self.bombs = {"gzip": bomb(31), "deflate": bomb(15)}
        self.ask_modes = itertools.cycle(
            ["gzip", "deflate", "br", "zstd", "drip", "endless", "silent", "deep"]
        )
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.count(self.path)
                server.reply(self, self.path.rsplit("/", 1)[-1])

            def do_GET(self) -> None:
                if self.path == "/stats":
                    server.stats(self)
                    return
                server.count(self.path)
                server.page(self, self.path.split("?", 1)[0])

        self.httpd = QuietServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stats(self, request: http.server.BaseHTTPRequestHandler) -> None:
        with self.lock:
            body = json.dumps(asdict(self.served)).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def count(self, path: str) -> None:
        with self.lock:
            key = path.split("?", 1)[0]
            self.served.requests[key] = self.served.requests.get(key, 0) + 1

    def _send(self, request: http.server.BaseHTTPRequestHandler, path: str, data: bytes) -> None:
        request.wfile.write(data)
        with self.lock:
            self.served.sent[path] = self.served.sent.get(path, 0) + len(data)

    def _stream(
        self, request: http.server.BaseHTTPRequestHandler, path: str, chunk: bytes, pause: float
    ) -> None:
        """``chunk`` again and again until the client goes (bounded: ten minutes)."""
        with self.lock:
            self.served.open += 1
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline:
                self._send(request, path, chunk)
                request.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass
        finally:
            with self.lock:
                self.served.open -= 1

    def reply(self, request: http.server.BaseHTTPRequestHandler, kind: str) -> None:
        if kind == "ask":
            with self.lock:
                kind = next(self.ask_modes)
        path = f"/reply/{kind}"
        if kind == "silent":
            request.rfile.read(1)  # until the client gives up
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        if kind in self.bombs:
            body = self.bombs[kind]
            request.send_header("Content-Encoding", kind)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            self._send(request, path, body)
        elif kind in ("br", "zstd"):
            request.send_header("Content-Encoding", kind)
            request.send_header("Content-Length", "4096")
            request.end_headers()
            self._send(request, path, bytes(4096))
        elif kind == "deep":
            body = b"[" * 60_000 + b"]" * 60_000
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            self._send(request, path, body)
        elif kind == "drip":  # a reply of plausible length, that takes minutes to come
            request.send_header("Content-Length", "1000")
            request.end_headers()
            self._stream(request, path, b" ", 0.2)
        else:  # endless: chunked, no length to refuse it by
            request.send_header("Transfer-Encoding", "chunked")
            request.end_headers()
            chunk = 64 * 1024
            self._stream(request, path, b"%x\r\n" % chunk + bytes(chunk) + b"\r\n", 0)

    def page(self, request: http.server.BaseHTTPRequestHandler, path: str) -> None:
        if path == "/page/endless-download":
            request.send_response(200)
            request.send_header("Content-Type", "application/octet-stream")
            request.send_header("Content-Disposition", 'attachment; filename="endless.bin"')
            request.end_headers()
            self._stream(request, path, bytes(64 * 1024), 0)
            return
        if path == "/page/many-downloads":
            body = (
                b"<html><body><script>for (let i = 0; i < 100; i++) {"
                b"const a = document.createElement('a'); a.href = '/page/endless-download?' + i;"
                b"a.download = 'f' + i; document.body.appendChild(a); a.click(); }"
                b"</script><p id=started>started</p></body></html>"
            )
        elif path == "/page/store":
            # 64 MiB a second into IndexedDB, until the page is left or storage refuses.
            body = (
                b"<html><body><script>"
                b"const open = indexedDB.open('fill', 1);"
                b"open.onupgradeneeded = () => open.result.createObjectStore('s');"
                b"open.onsuccess = () => { const db = open.result; let n = 0;"
                b"  const put = () => { const tx = db.transaction('s', 'readwrite');"
                b"    tx.objectStore('s').put(new Uint8Array(64 << 20).fill(n % 255), n++);"
                b"    tx.oncomplete = () => setTimeout(put, 100);"
                b"    tx.onerror = tx.onabort = () => { document.title = 'refused after ' + n; };"
                b"  }; put(); };"
                b"</script></body></html>"
            )
        else:
            body = b"<html><body>nothing here</body></html>"
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        self._send(request, path, body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Hostile:
    """A HostileServer in a process of its own, so that what it sends costs the test's
    own measurements nothing; ``stats`` reads what it did."""

    def __init__(self, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://{host}:{self.port}"
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.hostile", "serve", host, str(self.port)],
            cwd=ROOT,
        )
        wait_for(lambda: answers(f"{self.base}/stats"), timeout_s=60, what="the hostile server")

    def stats(self) -> Served:
        return Served(**httpx.get(f"{self.base}/stats", timeout=5).json())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def honest_caller(base_url: str, token: str, duration_s: float) -> dict[str, list[Any]]:
    """``print(2+2)`` one after another for ``duration_s``: each answer's seconds."""
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:
        for _ in range(3):  # warm-up: a connection, the first sandboxes
            client.post("/execute", json={"code": "print(2+2)"})
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = client.post("/execute", json={"code": "print(2+2)"})
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200 or answer.json()["stdout"] != "4\n":
                failures.append(f"{answer.status_code} {answer.text[:200]}")
            time.sleep(0.02)
    return {"latencies": latencies, "failures": failures}


class Victim:
    """An honest caller in a process of its own (so that the attack's threads in this
    one do not slow its clock): one run of ``honest_caller``."""

    def __init__(self, base_url: str, token: str, duration_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile", "victim", base_url, token, str(duration_s)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )

    def result(self) -> tuple[list[float], list[str]]:
        out, _ = self.proc.communicate(timeout=300)
        done = json.loads(out)
        return done["latencies"], done["failures"]


def quiet_p50_ms(base_url: str, token: str, duration_s: float = 4) -> float:
    """The honest caller's p50 with no attack under way (measured just before one)."""
    latencies, failures = Victim(base_url, token, duration_s).result()
    assert not failures, failures[:3]
    return statistics.median(latencies) * 1000


@dataclass
class Figures:
    """One attack's effect on everyone else, measured beside it."""

    case: str
    victim_p50_ms: float
    quiet_p50_ms: float
    health_max_s: float
    rss_growth_mb: float
    victim_runs: int

    @property
    def ratio(self) -> float:
        return self.victim_p50_ms / self.quiet_p50_ms

    def line(self) -> str:
        return (
            f"{self.case}: victim p50 {self.victim_p50_ms:.1f} ms ({self.ratio:.2f}x quiet "
            f"{self.quiet_p50_ms:.1f} ms, {self.victim_runs} runs), /health at most "
            f"{self.health_max_s * 1000:.0f} ms, controller RSS +{self.rss_growth_mb:.0f} MiB"
        )


class Monitor:
    """Samples the service every 50 ms: /health's latency and the controller's memory."""

    def __init__(self, svc: ServiceProcess) -> None:
        self.svc = svc
        self.health_max_s = 0.0
        self.rss_max_kb = 0
        self.health_failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.svc.base_url, timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get("/health").status_code
                    if status != 200:
                        self.health_failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    self.health_failures.append(repr(exc))
                self.health_max_s = max(self.health_max_s, time.monotonic() - started)
                self.rss_max_kb = max(self.rss_max_kb, rss_kb(self.svc.proc.pid))
                self._stop.wait(0.05)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def attack(
    case: str,
    svc: ServiceProcess,
    token: str,
    attackers: list[Callable[[threading.Event], None]],
    duration_s: float = 8.0,
) -> Figures:
    """The honest caller's p50 alone, then beside ``attackers`` (each running until its
    event is set) for ``duration_s`` while the monitor samples; the figures of that."""
    quiet = quiet_p50_ms(svc.base_url, token)
    before_kb = rss_kb(svc.proc.pid)
    stop = threading.Event()
    threads = [threading.Thread(target=a, args=(stop,), daemon=True) for a in attackers]
    with Monitor(svc) as monitor:
        for thread in threads:
            thread.start()
        victim = Victim(svc.base_url, token, duration_s)
        latencies, failures = victim.result()
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:3]
    assert not monitor.health_failures, monitor.health_failures[:3]
    figures = Figures(
        case=case,
        victim_p50_ms=statistics.median(latencies) * 1000,
        quiet_p50_ms=quiet,
        health_max_s=monitor.health_max_s,
        rss_growth_mb=max(monitor.rss_max_kb - before_kb, 0) / 1024,
        victim_runs=len(latencies),
    )
    REPORT.append(figures)
    return figures


class Namespace:
    """A network namespace the test makes itself: its loopback, a veth pair to this host
    (``outside`` here, ``inside`` there: the only way between them), a second veth pair
    wholly inside it whose one end holds THIS_HOST (a public-looking address that is the
    namespace's own, as a dummy interface would hold it; this kernel has no dummy
    driver), and a resolv.conf naming a name server that never answers.

    Commands run inside with ``ip netns exec NAME`` (``prefix``), which also puts
    /etc/netns/NAME/resolv.conf in place of /etc/resolv.conf for them.
    """

    THIS_HOST = "44.1.2.3"
    SILENT_DNS = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('127.0.0.1', 53))\n"
        "print('listening', flush=True)\n"
        "while True:\n"
        "    s.recv(4096)  # and never an answer\n"
    )

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"hostile-{pid}"
        net = 10 + pid % 200
        self.outside, self.inside = f"10.250.{net}.1", f"10.250.{net}.2"
        self._host_if, self._ns_if = f"hv{pid % 100000}", f"nv{pid % 100000}"
        self.prefix = ("ip", "netns", "exec", self.name)
        self._etc = Path("/etc/netns") / self.name
        self._dns: subprocess.Popen[bytes] | None = None

    def _ip(self, *args: str, inside: bool = False) -> None:
        subprocess.run([*(self.prefix if inside else ()), "ip", *args], check=True)

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self._ip("link", "add", self._host_if, "type", "veth", "peer", "name", self._ns_if)
            self._ip("link", "set", self._ns_if, "netns", self.name)
            self._ip("addr", "add", f"{self.outside}/30", "dev", self._host_if)
            self._ip("link", "set", self._host_if, "up")
            self._ip("addr", "add", f"{self.inside}/30", "dev", self._ns_if, inside=True)
            self._ip("link", "set", self._ns_if, "up", inside=True)
            self._ip("link", "set", "lo", "up", inside=True)
            self._ip("link", "add", "d0", "type", "veth", "peer", "name", "d1", inside=True)
            self._ip("addr", "add", f"{self.THIS_HOST}/32", "dev", "d0", inside=True)
            self._ip("link", "set", "d0", "up", inside=True)
            self._ip("link", "set", "d1", "up", inside=True)
            self._etc.mkdir(parents=True, exist_ok=True)
            (self._etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            self._dns = subprocess.Popen(
                [*self.prefix, "/usr/bin/python3", "-c", self.SILENT_DNS], stdout=subprocess.PIPE
            )
            assert self._dns.stdout is not None
            ready = self._dns.stdout.readline()  # it binds at once, or dies saying why
            assert ready == b"listening\n", "the silent name server did not start"
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dns is not None:
            self._dns.kill()
            self._dns.communicate()  # waits, and closes its pipe
        subprocess.run(["ip", "netns", "del", self.name], check=False)  # its veths go too
        subprocess.run(["ip", "link", "del", self._host_if], check=False, capture_output=True)
        shutil.rmtree(self._etc, ignore_errors=True)


def main() -> None:
    """``python -m tests.hostile serve HOST PORT`` | ``victim BASE_URL TOKEN SECONDS``."""
    if sys.argv[1] == "serve":
        server = HostileServer(sys.argv[2], int(sys.argv[3]))
        threading.Event().wait()
        server.close()
    else:
        print(json.dumps(honest_caller(sys.argv[2], sys.argv[3], float(sys.argv[4]))))


if __name__ == "__main__":
    main()
