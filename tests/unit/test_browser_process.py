"""One browser agent's command line, environment and Chromium launcher, as data."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from controller.browser.process import (
    BOOTSTRAP,
    CHROMIUM_PROXY_PORT,
    PROXY_INSIDE,
    AgentLayout,
    agent_argv,
    agent_env,
    chromium_bwrap_argv,
    chromium_launcher,
)
from controller.settings import Settings

LAYOUT = AgentLayout(
    Path("/state/browser/ag-1"), Path("/state/browser/app"), Path("/state/browser/bin/ag-1")
)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, auth_token="a" * 32, **values)  # type: ignore[call-arg]


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_agent_runs_as_its_own_uid_isolated_and_through_the_launcher() -> None:
    argv = agent_argv(
        settings(port=9090, browser_python="/env/bin/python3"), LAYOUT, (64003, 64004)
    )
    assert argv[:12] == [
        "/usr/bin/setpriv",
        "--reuid", "64003", "--regid", "64004", "--clear-groups",
        "--pdeathsig", "KILL", "--no-new-privs", "--",
        "/env/bin/python3", "-I",
    ]  # fmt: skip
    assert argv[12:15] == ["-c", BOOTSTRAP, "/state/browser/app"]
    assert after(argv, "--executable") == "/state/browser/bin/ag-1"
    assert after(argv, "--proxy-socket") == "/state/browser/ag-1/proxy.sock"
    assert after(argv, "--proxy-port") == str(CHROMIUM_PROXY_PORT)
    assert after(argv, "--reserved-port") == "9090"
    assert "--exit-on-stdin-eof" in argv
    assert "--allow-private-networks" not in argv and "--no-chromium-sandbox" not in argv


def test_without_namespaces_or_root_the_agent_launches_chromium_itself() -> None:
    layout = AgentLayout(LAYOUT.data_dir, LAYOUT.code_dir, None)
    argv = agent_argv(
        settings(browser_allow_private_networks=True, browser_chromium_sandbox=False), layout, None
    )
    assert argv[:5] == ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--no-new-privs", "--"]
    assert after(argv, "--executable") == "/usr/bin/chromium"
    assert "--proxy-socket" not in argv
    assert "--allow-private-networks" in argv and "--no-chromium-sandbox" in argv


def test_the_agent_gets_nothing_of_the_service_and_writes_only_chromiums_directory() -> None:
    env = agent_env(LAYOUT)
    assert env["HOME"] == env["TMPDIR"] == "/state/browser/ag-1/chromium"
    assert env["XDG_CACHE_HOME"].startswith(env["HOME"])
    assert not any("TOKEN" in key or "AUTH" in key for key in env)


def test_chromium_has_no_network_but_the_proxy_and_a_bounded_tmpfs_for_its_data() -> None:
    argv = chromium_bwrap_argv(settings(browser_disk_mb=100), LAYOUT)
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-user", "--unshare-net", "--unshare-pid", "--die-with-parent"):
        assert flag in argv
    assert argv[argv.index("--ro-bind") : argv.index("--ro-bind") + 3] == ["--ro-bind", "/", "/"]
    assert argv[argv.index("--bind") : argv.index("--bind") + 3] == [
        "--bind", "/state/browser/ag-1/proxy.sock", PROXY_INSIDE,
    ]  # fmt: skip
    private = argv.index("/state/browser/ag-1/chromium")
    assert argv[private - 5 : private] == [
        "--size", str(100 * 1024 * 1024), "--perms", "0700", "--tmpfs",
    ]  # fmt: skip
    assert argv[argv.index("/tmp") - 3 : argv.index("/tmp")] == [
        "--size", str(100 * 1024 * 1024), "--tmpfs",
    ]  # fmt: skip
    # Writable: only tmpfs of its own, each with a size; the host is read-only beneath.
    writable = [argv[i + 1] for i, a in enumerate(argv) if a in ("--tmpfs", "--bind")]
    assert writable == ["/tmp", "/var/tmp", "/run", "/state/browser/ag-1/proxy.sock",
                        "/state/browser/ag-1/chromium"]  # fmt: skip
    tmpfs = [i for i, a in enumerate(argv) if a == "--tmpfs"]
    assert all(argv[i - 2] == "--size" or argv[i - 4] == "--size" for i in tmpfs)
    assert argv[argv.index("--setenv") : argv.index("--setenv") + 3] == [
        "--setenv", "TMPDIR", "/tmp",
    ]  # fmt: skip
    forward = argv[argv.index("-c") + 1]
    assert f"TCP-LISTEN:{CHROMIUM_PROXY_PORT},bind=127.0.0.1" in forward
    assert f"UNIX-CONNECT:{PROXY_INSIDE}" in forward
    assert argv[-1] == "/usr/bin/chromium"


def test_the_launcher_execs_the_same_argv_with_chromiums_arguments() -> None:
    text = chromium_launcher(settings(), LAYOUT)
    assert text.startswith("#!/bin/sh\n")
    line = text.splitlines()[-1]
    assert line.startswith("exec ") and line.endswith(' "$@"')
    assert shlex.split(line[len("exec ") : -len(' "$@"')]) == chromium_bwrap_argv(
        settings(), LAYOUT
    )
