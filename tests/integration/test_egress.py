"""Network by name in local mode: the egress proxy, through real sandboxes, to real servers.

Loopback servers stand for the internet: their names are mapped with
NETWORK_INTERNAL_HOSTS (the one way a name may lead to a loopback address), and the
held-out tries go around the proxy (raw sockets, UDP, DNS, IPv6, another sandbox's
socket) to show that nothing but the proxy leads out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import ssl
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.origin import start_origin
from tests.support import ServiceProcess, free_port

pytestmark = pytest.mark.integration


def build_wheel(directory: Path) -> str:
    """A pure-Python wheel, ``demo_pkg`` 1.0, written into ``directory``; its file name."""
    name = "demo_pkg-1.0-py3-none-any.whl"
    files = {
        "demo_pkg/__init__.py": b"VALUE = 42\n",
        "demo_pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        "demo_pkg-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    record.append("demo_pkg-1.0.dist-info/RECORD,,")
    files["demo_pkg-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(directory / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return name


class PackageIndex:
    """A PEP 503 simple index on loopback, serving one wheel."""

    def __init__(self, root: Path) -> None:
        (root / "files").mkdir()
        wheel = build_wheel(root / "files")
        digest = hashlib.sha256((root / "files" / wheel).read_bytes()).hexdigest()
        page = root / "simple" / "demo-pkg"
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            f'<a href="/files/{wheel}#sha256={digest}">{wheel}</a>\n', encoding="utf-8"
        )
        handler = functools.partial(QuietFiles, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class Servers:
    def __init__(self, tmp: Path) -> None:
        self.ca = tmp / "cert.pem"
        key = tmp / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=files.test", "-addext",
             "subjectAltName=DNS:files.test,DNS:a.mirror.test",
             "-keyout", str(key), "-out", str(self.ca)],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key)
        self.http = start_origin()
        self.https = start_origin(tls=context)
        self.http_port = self.http.server_address[1]
        self.https_port = self.https.server_address[1]

    def close(self) -> None:
        for server in (self.http, self.https):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    found = Servers(tmp_path_factory.mktemp("egress-servers"))
    yield found
    found.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    found = PackageIndex(tmp_path_factory.mktemp("package-index"))
    yield found
    found.close()


@pytest.fixture(scope="module")
def networked(servers: Servers, index: PackageIndex) -> Iterator[ServiceProcess]:
    port = free_port()
    internal = [
        "files.test", "other.test", "a.mirror.test", "bad.mirror.test", "ctl.test", "pypi.test"
    ]  # fmt: skip
    ports = (servers.http_port, servers.https_port, index.port, port)
    with ServiceProcess(
        port=port,
        network_allowed_domains="files.test, other.test, *.mirror.test, localhost, ctl.test, "
        "pypi.test",
        network_denied_domains="bad.mirror.test",
        network_allowed_ports=",".join(str(p) for p in ports),
        network_internal_hosts=",".join(f"{name}=127.0.0.1" for name in internal),
    ) as svc:
        yield svc


def with_ca(servers: Servers) -> list[dict[str, str]]:
    return [{"path": "ca.pem", "content": base64.b64encode(servers.ca.read_bytes()).decode()}]


def try_open(url: str) -> str:
    """Code that opens ``url`` with urllib and prints how that ended."""
    return (
        "import urllib.request\ntry:\n"
        f"    urllib.request.urlopen({url!r})\n    print('opened')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )


def network_violations(result: dict[str, Any]) -> dict[str, str]:
    return {v["target"]: v["detail"] for v in result["violations"] if v["kind"] == "network"}


def test_allowed_names_work_through_urllib_requests_and_curl(
    networked: ServiceProcess, servers: Servers
) -> None:
    http_url = f"http://files.test:{servers.http_port}/plain"
    https_url = f"https://files.test:{servers.https_port}/tls"
    code = f"""
import ssl, subprocess, urllib.request
import requests
tls = ssl.create_default_context(cafile="ca.pem")
print(urllib.request.urlopen({http_url!r}).read().decode())
print(urllib.request.urlopen({https_url!r}, context=tls).read().decode())
print(requests.get({https_url!r}, verify="ca.pem").text)
print(subprocess.run(["curl", "-sS", "--cacert", "ca.pem", {https_url!r}],
                     capture_output=True, text=True, check=True).stdout)
"""
    result = networked.execute(code, files=with_ca(servers))
    assert result["exitCode"] == 0, result["stderr"]
    lines = result["stdout"].splitlines()
    assert lines == [
        f"hello files.test:{p}" for p in (servers.http_port,) + (servers.https_port,) * 3
    ]
    assert result["violations"] == []
    usage = result["usage"]["network"]
    assert usage["connections"] == 4 and usage["bytesReceived"] > 4 * len("hello files.test")
    assert usage["bytesSent"] > 0


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("evil.test", "not an allowed domain"),
        ("evilfiles.test", "not an allowed domain"),
        ("files.test.evil.test", "not an allowed domain"),
        ("bad.mirror.test", "is denied"),
        ("203.0.113.9", "is an IP address"),
        ("localhost", "a loopback address"),  # through the proxy: not the sandbox's own
    ],
)
def test_refused_destinations_are_reported_whatever_the_client(
    networked: ServiceProcess, servers: Servers, host: str, reason: str
) -> None:
    target = f"{host}:{servers.https_port}"
    code = (
        "import subprocess\n"
        f"done = subprocess.run(['curl', '-sS', '--noproxy', '', 'https://{target}/'], "
        "capture_output=True)\n"
        "print(done.returncode)\n"
    )
    result = networked.execute(code)
    assert result["stdout"].strip() != "0"
    assert reason in network_violations(result)[target]
    assert f"[sandbox] network {target}: " in result["stderr"]


def test_pip_installs_from_an_allowed_index(networked: ServiceProcess, index: PackageIndex) -> None:
    # --target: the sandbox's interpreter is isolated (-I), so it has no user site.
    # --trusted-host: pip ignores a plain-HTTP index elsewhere than on localhost.
    code = (
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',\n"
        "    '--disable-pip-version-check', '--no-cache-dir', '--target', 'lib',\n"
        f"    '--index-url', 'http://pypi.test:{index.port}/simple',\n"
        "    '--trusted-host', 'pypi.test', 'demo-pkg'],\n"
        "    capture_output=True, text=True)\n"
        "print(done.returncode, done.stderr[-500:])\n"
        "sys.path.insert(0, 'lib')\n"
        "import demo_pkg\n"
        "print(demo_pkg.VALUE)\n"
    )
    result = networked.execute(code, timeoutMs=60_000)
    assert result["stdout"].splitlines()[-1] == "42", result["stdout"] + result["stderr"]
    assert result["stdout"].startswith("0 ")
    assert network_violations(result) == {}


def test_a_request_body_goes_through_and_the_checked_name_is_the_host(
    networked: ServiceProcess, servers: Servers
) -> None:
    # The body is sent before its answer comes; a Host of the client's own choosing
    # would reach another site behind the same address: the URL's is what is sent.
    url = f"http://files.test:{servers.http_port}/"
    code = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen({url!r}, data=b'hello').read().decode())\n"
        f"request = urllib.request.Request({url!r}, headers={{'Host': 'elsewhere.test'}})\n"
        "print(urllib.request.urlopen(request).read().decode())\n"
    )
    result = networked.execute(code)
    assert result["stdout"].splitlines() == ["got hello", f"hello files.test:{servers.http_port}"]


def test_the_service_itself_is_refused_even_by_an_internal_name(
    networked: ServiceProcess,
) -> None:
    target = f"ctl.test:{networked.port}"
    result = networked.execute(try_open(f"http://{target}/health"))
    assert result["stdout"].startswith("HTTPError HTTP Error 403")
    assert "leads to the service itself" in network_violations(result)[target]


def test_a_redirect_to_a_refused_name_is_refused_too(
    networked: ServiceProcess, servers: Servers
) -> None:
    away = f"http://evil.test:{servers.http_port}/"
    url = f"http://files.test:{servers.http_port}/redirect?to={away}"
    result = networked.execute(try_open(url))
    assert result["stdout"].startswith("HTTPError HTTP Error 403")
    assert "not an allowed domain" in network_violations(result)[f"evil.test:{servers.http_port}"]


def test_a_tunnel_to_a_port_not_allowed_is_refused(
    networked: ServiceProcess, servers: Servers
) -> None:
    code = "import subprocess\nprint(subprocess.run(['curl', '-sS', 'https://files.test:8443/']).returncode)\n"
    result = networked.execute(code)
    assert result["stdout"].strip() != "0"
    assert "port 8443 is not allowed" in network_violations(result)["files.test:8443"]


def test_a_request_narrows_the_ceiling(networked: ServiceProcess, servers: Servers) -> None:
    fetch = (
        "import urllib.request\n"
        "for name in ('files.test', 'other.test'):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen(f'http://{{name}}:{servers.http_port}/').status)\n"
        "    except Exception as exc:\n"
        "        print(exc)\n"
    )
    result = networked.execute(fetch, network={"allowedDomains": ["files.test"]})
    assert result["stdout"].splitlines()[0] == "200"
    assert "403" in result["stdout"].splitlines()[1]
    assert f"other.test:{servers.http_port}" in network_violations(result)
    none = networked.execute(fetch, network={"allowedDomains": []})
    assert "HTTP_PROXY" not in none["stdout"] and none["usage"]["network"] is None


@pytest.mark.parametrize(
    ("entries", "field", "rule"),
    [
        (["files.test", "github.com"], "network.allowedDomains[1]", "outside_ceiling"),
        (["bad.mirror.test"], "network.allowedDomains[0]", "denied"),
        (["*.test"], "network.allowedDomains[0]", "too_broad"),
        (["10.0.0.1"], "network.allowedDomains[0]", "ip_literal"),
    ],
)
def test_a_request_cannot_widen_the_ceiling(
    networked: ServiceProcess, entries: list[str], field: str, rule: str
) -> None:
    response = networked.client.post(
        "/execute", json={"code": "pass", "network": {"allowedDomains": entries}}
    )
    assert response.status_code == 422
    detail = response.json()["details"][0]
    assert (detail["field"], detail["rule"]) == (field, rule)


HELD_OUT = """
import os, socket
def attempt(name, action):
    try:
        action()
        print(name, "REACHED")
    except OSError as exc:
        print(name, "failed", type(exc).__name__)
def tcp():
    socket.create_connection(("93.184.215.14", 80), timeout=2)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x" * 32, ("8.8.8.8", 53))
    s.settimeout(1)
    s.recv(512)
def dns():
    socket.getaddrinfo("files.test", 80)
def ipv6():
    socket.create_connection(("2606:4700:4700::1111", 80), timeout=2)
def raw():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def packet():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
def other_socket():
    for entry in os.listdir("/.egress"):
        assert entry == "proxy.sock", entry
    socket.socket(socket.AF_UNIX).connect(STATE + "/egress")
for name, action in [("tcp", tcp), ("udp", udp), ("dns", dns), ("ipv6", ipv6),
                     ("raw", raw), ("packet", packet), ("other_socket", other_socket)]:
    attempt(name, action)
"""


def test_nothing_but_the_proxy_leads_out(networked: ServiceProcess) -> None:
    code = f"STATE = {networked.state_dir!r}\n" + HELD_OUT
    result = networked.execute(code)
    lines = result["stdout"].splitlines()
    assert len(lines) == 7 and all(" failed " in line for line in lines), result["stdout"]
    assert "93.184.215.14:80" in network_violations(result)


def test_without_an_allowlist_nothing_is_bound_in(service: ServiceProcess) -> None:
    code = (
        "import os\n"
        "print(os.path.exists('/.egress'), sorted(k for k in os.environ if 'proxy' in k.lower()))\n"
    )
    result = service.execute(code)
    assert result["stdout"] == "False []\n" and result["usage"]["network"] is None
    response = service.client.post(
        "/execute", json={"code": "pass", "network": {"allowedDomains": ["files.test"]}}
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["rule"] == "no_network"


class Webhook(http.server.BaseHTTPRequestHandler):
    """The operator's ask-callback: yes for yes.test, no for no.test, too slow for
    slow.test, broken for broken.test."""

    asked: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Webhook.asked.append(body)
        host = body["host"]
        if host == "slow.test":
            time.sleep(1.0)
        status, answer = (500, b"oops") if host == "broken.test" else (200, b"")
        if not answer:
            answer = json.dumps({"allow": host == "yes.test"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def asking(servers: Servers) -> Iterator[ServiceProcess]:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    names = ["files.test", "yes.test", "no.test", "slow.test", "broken.test"]
    try:
        with ServiceProcess(
            network_allowed_domains="files.test",
            network_allowed_ports=str(servers.http_port),
            network_internal_hosts=",".join(f"{name}=127.0.0.1" for name in names),
            network_ask_url=f"http://127.0.0.1:{hook.server_address[1]}/ask",
            network_ask_timeout_ms="300",
        ) as svc:
            yield svc
    finally:
        hook.shutdown()
        hook.server_close()


def test_the_ask_callback_decides_unlisted_names_once_and_denies_on_silence(
    asking: ServiceProcess, servers: Servers
) -> None:
    Webhook.asked.clear()
    hosts = ["yes.test", "yes.test", "no.test", "slow.test", "broken.test", "files.test"]
    code = "".join(try_open(f"http://{host}:{servers.http_port}/") for host in hosts)
    result = asking.execute(code)
    assert result["stdout"].splitlines() == ["opened", "opened"] + [
        "HTTPError HTTP Error 403: Forbidden"
    ] * 3 + ["opened"]
    refused = network_violations(result)
    for host in ("no.test", "slow.test", "broken.test"):
        assert "the ask-callback said no" in refused[f"{host}:{servers.http_port}"]
    assert sorted(a["host"] for a in Webhook.asked) == [
        "broken.test", "no.test", "slow.test", "yes.test"
    ]  # fmt: skip
    assert {a["executionId"] for a in Webhook.asked} == {result["executionId"]}
    assert Webhook.asked[0]["port"] == servers.http_port and Webhook.asked[0]["labels"] == {}
    # A request that lists its names is not asked about others.
    Webhook.asked.clear()
    narrowed = asking.execute(
        try_open(f"http://yes.test:{servers.http_port}/"),
        network={"allowedDomains": ["files.test"]},
    )
    assert narrowed["stdout"].startswith("HTTPError") and Webhook.asked == []
