"""The client as a distribution of its own (client/): installed in a fresh environment
without the service's dependencies, typed, versioned, and calling the real service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sandbox_client
from tests.support import ServiceProcess

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment holding the client distribution alone."""
    env = tmp_path_factory.mktemp("client-env")
    # Built from a copy: pip builds a directory in place, leaving its build/ behind.
    source = shutil.copytree(ROOT / "client", tmp_path_factory.mktemp("client-source") / "c")
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(env / "bin/pip"), "install", "-q", "--no-cache-dir", str(source)], check=True
    )
    yield env


def in_env(env: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin/python"), "-I", "-c", code], capture_output=True, text=True, timeout=60
    )


def test_the_client_installs_alone_typed_and_versioned(client_env: Path) -> None:
    found = in_env(
        client_env,
        "import importlib.metadata as m, json, pathlib, sandbox_client\n"
        "print(sandbox_client.__version__, m.version('sandbox-client'))\n"
        "print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))\n"
        "print((pathlib.Path(sandbox_client.__file__).parent / 'py.typed').exists())\n",
    )
    assert found.returncode == 0, found.stderr
    versions, distributions, typed = found.stdout.splitlines()
    assert versions == f"{sandbox_client.__version__} {sandbox_client.__version__}"
    names = set(json.loads(distributions))
    assert "sandbox-client" in names and "httpx" in names
    assert not names & {"sandbox-controller", "fastapi", "uvicorn", "prometheus-client"}
    assert typed == "True"
    for server_only in ("fastapi", "controller"):
        assert in_env(client_env, f"import {server_only}").returncode != 0


def test_the_clients_own_command_calls_the_service(
    client_env: Path, service: ServiceProcess, tmp_path: Path
) -> None:
    version = subprocess.run(
        [str(client_env / "bin/sandbox-client"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == f"sandbox-client {sandbox_client.__version__}"
    script = tmp_path / "hello.py"
    script.write_text("print(2 + 2)\n")
    ran = subprocess.run(
        [str(client_env / "bin/sandbox-client"), "exec", str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SANDBOX_URL": service.base_url, "SANDBOX_TOKEN": service.token},
    )
    assert (ran.returncode, ran.stdout) == (0, "4\n"), ran.stderr
