"""The bwrap argv is a pure function of the policy: check it as data."""

from __future__ import annotations

from dataclasses import replace

import pytest
from runner.bwrap import (
    BWRAP,
    CHROOT,
    EGRESS_DIR,
    NETWORK_NAMESPACE_FIRST,
    STUB_NAME,
    HostFacts,
    bwrap_argv,
    is_gvisor,
    launcher_argv,
)
from runner.contract import RunLimits, SandboxLimits
from runner.policy import (
    EGRESS_MOUNT,
    EGRESS_PORT,
    EGRESS_SOCKET,
    SANDBOX_ENV,
    SUPPORT_MOUNT,
    Layout,
)

STUB_PATH = f"{SUPPORT_MOUNT}/{STUB_NAME}"

HOST = HostFacts(
    symlinks={"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64"},
    directories=frozenset({"/usr", "/etc/ld.so.cache", "/etc/ssl/certs", "/opt/env"}),
)
LAYOUT = Layout(support_dir="/srv/support", extra_ro_paths=("/opt/env", "/missing/env"))
LIMITS = SandboxLimits(workspace_bytes=1000, tmp_bytes=2000)


@pytest.fixture
def argv() -> list[str]:
    return bwrap_argv(LAYOUT, LIMITS, HOST, status_fd="7", events_fd="8")


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_every_namespace_is_unshared_including_the_network(argv: list[str]) -> None:
    for flag in (
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
    ):
        assert flag in argv
    assert "--share-net" not in argv


def test_under_gvisor_the_network_namespace_is_made_before_bubblewrap(argv: list[str]) -> None:
    gvisor = bwrap_argv(LAYOUT, LIMITS, replace(HOST, gvisor=True), "7", "8", seccomp_fd="9")
    first = len(NETWORK_NAMESPACE_FIRST)
    assert tuple(gvisor[:first]) == NETWORK_NAMESPACE_FIRST and gvisor[first] == BWRAP
    assert NETWORK_NAMESPACE_FIRST[-1] == "--" and "--net" in NETWORK_NAMESPACE_FIRST
    # bubblewrap makes every other namespace; nested ones are the seccomp filter's to
    # refuse (runner.seccomp); the rest of the command is the same.
    with_filter = bwrap_argv(LAYOUT, LIMITS, HOST, "7", "8", seccomp_fd="9")
    assert gvisor[first:] == [
        a for a in with_filter if a not in ("--unshare-net", "--disable-userns")
    ]
    assert "--unshare-net" in argv and "--disable-userns" in argv
    # As root, the ids are dropped first, so the namespaces belong to the sandbox's user.
    launched = launcher_argv(gvisor, uid=1234, gid=1234)
    assert launched[0] == CHROOT and launched.index(NETWORK_NAMESPACE_FIRST[0]) == 5


def test_under_gvisor_no_seccomp_filter_means_no_sandbox() -> None:
    # Nested namespaces are the filter's alone to refuse there (a machine it has no
    # table for gets none): fail closed rather than start a sandbox that may make them.
    with pytest.raises(ValueError, match="needs the seccomp filter"):
        bwrap_argv(LAYOUT, LIMITS, replace(HOST, gvisor=True), status_fd="7", events_fd="8")


def test_gvisor_is_told_by_the_kernel_release_it_reports() -> None:
    assert is_gvisor("4.19.0-gvisor")
    assert not is_gvisor("6.1.0-28-amd64") and not is_gvisor("6.12.48+deb13-amd64")
    assert not is_gvisor("gvisor-like-6.1.0")


def test_sandbox_dies_with_its_parent_in_its_own_session(argv: list[str]) -> None:
    assert "--die-with-parent" in argv and "--new-session" in argv
    # The stub is the namespace's PID 1: unkillable from inside, and it takes all with it.
    assert argv.index("--as-pid-1") > argv.index("--unshare-pid")


def test_environment_is_cleared_then_only_the_documented_set(argv: list[str]) -> None:
    assert argv.index("--clearenv") < argv.index("--setenv")
    assert dict(pairs(argv, "--setenv")) == SANDBOX_ENV


def test_only_existing_layout_paths_are_mounted_read_only(argv: list[str]) -> None:
    ro = pairs(argv, "--ro-bind")
    assert ("/usr", "/usr") in ro and ("/opt/env", "/opt/env") in ro
    # /etc is one prepared directory, never the host's.
    assert ("/srv/support/etc", "/etc") in ro
    assert all(not src.startswith("/etc") for src, _ in ro)
    assert all(src != "/missing/env" for src, _ in ro)
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    # No plain --bind: nothing of the host is writable from inside.
    assert "--bind" not in argv and "--dev-bind" not in argv


def test_host_secrets_are_never_mounted(argv: list[str]) -> None:
    sources = [src for src, _ in pairs(argv, "--ro-bind")]
    for secret in ("/root", "/home", "/etc/shadow", "/etc/ssl/private", "/var", "/proc"):
        assert not any(s == secret or s.startswith(secret + "/") for s in sources)


def test_workspace_and_tmp_are_sized_tmpfs_and_root_is_read_only_last(argv: list[str]) -> None:
    tmpfs = {argv[i + 1]: argv[i - 1] for i, a in enumerate(argv) if a == "--tmpfs"}
    assert tmpfs == {"/workspace": "1000", "/tmp": "2000", "/dev/shm": "2000"}
    protected = pairs(argv, "--ro-bind")
    assert ("/srv/support/empty-file", "/workspace/.env") in protected
    assert ("/srv/support/empty-dir", "/workspace/secrets") in protected
    remount = argv.index("--remount-ro")
    assert argv[remount + 1] == "/"
    assert remount > max(i for i, a in enumerate(argv) if a in ("--tmpfs", "--ro-bind"))
    assert argv[argv.index("--chdir") + 1] == "/workspace"


def test_the_stub_runs_isolated_with_the_status_fd(argv: list[str]) -> None:
    assert argv[0] == BWRAP
    command = argv[argv.index("--") + 1 :]
    assert command == [LAYOUT.python, "-I", "-S", "/.sandbox/stub.pyc", "7", "8"]


def test_launcher_drops_root_to_the_sandbox_ids() -> None:
    as_root = launcher_argv(["bwrap", "x"], uid=64000, gid=64001)
    assert as_root == [
        CHROOT,
        "--userspec=64000:64001",
        "--groups=64001",
        "--skip-chdir",
        "/",
        "bwrap",
        "x",
    ]
    assert launcher_argv(["bwrap", "x"], uid=None, gid=None) == ["bwrap", "x"]


def test_limits_become_rlimits_with_a_cpu_backstop() -> None:
    limits = RunLimits(
        timeout_ms=2500, memory_bytes=10, max_processes=3, max_file_bytes=4, max_open_files=5
    )
    assert limits.rlimits() == {
        "memoryBytes": 10,
        "maxProcesses": 3,
        "maxFileBytes": 4,
        "maxOpenFiles": 5,
        "cpuSeconds": 4,
    }


def test_an_egress_sandbox_mounts_its_own_directory_read_only_and_keeps_the_network_private(
    argv: list[str],
) -> None:
    assert EGRESS_DIR not in argv and not any(a.startswith("--egress=") for a in argv)
    egress = bwrap_argv(replace(LAYOUT, egress=True), LIMITS, HOST, status_fd="7", events_fd="8")
    assert (EGRESS_DIR, EGRESS_MOUNT) in pairs(egress, "--ro-bind")
    assert "--unshare-net" in egress and "--share-net" not in egress
    # The mount comes before the root is made read-only; the stub learns where to forward.
    assert egress.index(EGRESS_DIR) < egress.index("--remount-ro")
    assert (
        egress[egress.index(STUB_PATH) + 3]
        == f"--egress={EGRESS_MOUNT}/{EGRESS_SOCKET}:{EGRESS_PORT}"
    )
