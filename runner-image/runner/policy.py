"""The sandbox policy as data: limits, what the sandbox sees, and the environment it gets.

Asymmetric defaults, as in the best sandboxes of the field: reads are limited to what
Python needs (the rest of the host is simply not mounted), writes are allowed only in
the execution's own workspace and private /tmp, and there is no network at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The only environment the sandboxed code ever sees.  Nothing of the service's
# environment is passed through: bubblewrap itself is started with this set too.
SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}

# Host files under /etc that Python and common libraries read.  Everything else under
# /etc (shadow, ssh keys, ssl/private, the service's own configuration) stays hidden.
ETC_FILES: tuple[str, ...] = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/python3.11",
    "/etc/python3.12",
    "/etc/python3.13",
)

# Paths whose access is reported as a violation: they exist on a typical host but are
# deliberately absent from the sandbox.  (Absence is the enforcement; this list only
# makes the denial visible to the caller.)
HIDDEN_PATHS: tuple[str, ...] = (
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh",
    "/etc/ssl/private",
    "/var",
    "/srv",
    "/opt",
    "/mnt",
    "/media",
    "/run",
    "/boot",
    "/sys",
    "/work",
)

WORKSPACE = "/workspace"
# The way out when a domain is allowed: the host directory of this sandbox's egress
# socket is mounted here (controller.egress.channel serves it), and the stub forwards
# the sandbox's own loopback port EGRESS_PORT to it, for clients that speak HTTP proxy.
EGRESS_MOUNT = "/.egress"
EGRESS_SOCKET = "proxy.sock"
EGRESS_PORT = 3128
SANDBOX_UID = 1000
SANDBOX_GID = 1000
SUPPORT_MOUNT = "/.sandbox"
DEFAULT_HOST_ID = 64000
"""Host uid and gid a sandbox is launched as when its supervisor runs as root (a runner
pod's: one sandbox a pod)."""
HOST_ID_RANGE = 1000
"""Host uids (and gids) a service leases from, one to each local sandbox or browser."""

# Where the code may write: the workspace and the private /tmp and /dev/shm, each a
# tmpfs of this sandbox alone (runner.bwrap mounts them).
WRITABLE_DIRS = (WORKSPACE, "/tmp", "/dev/shm")
# Workspace entries the code (and the caller's input files) can never write: `.env` is a
# read-only empty file and `secrets/` a read-only empty directory (runner.bwrap mounts
# them over the workspace), so no program can be fooled into reading planted ones.
PROTECTED_FILES = (".env",)
PROTECTED_DIRS = ("secrets",)
PROTECTED_NAMES = frozenset(PROTECTED_FILES + PROTECTED_DIRS)
MAX_COMPONENT_BYTES = 255
MAX_INPUT_DEPTH = 32
"""Components of an input file's path: the rules below cost time in proportion to them."""


class PathRefused(ValueError):
    """An input file path the policy refuses; ``rule`` names the rule it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def input_path(path: str) -> str:
    """The workspace-relative path an input file is written to (``./`` parts dropped).

    Raises PathRefused for an absolute path, ``..``, empty components, a protected name
    (``.env``, ``secrets/``), a component over 255 bytes, more than MAX_INPUT_DEPTH
    components, or a NUL.
    """
    if "\x00" in path:
        raise PathRefused("path_nul", "path cannot contain NUL")
    if path.startswith("/"):
        raise PathRefused("path_absolute", "path must be relative to the workspace")
    parts = [p for p in path.split("/") if p != "."]
    if not parts or "" in parts:
        raise PathRefused("path_empty_component", "path cannot be empty or have empty components")
    if ".." in parts:
        raise PathRefused("path_traversal", "path cannot contain '..'")
    if len(parts) > MAX_INPUT_DEPTH:
        raise PathRefused("path_too_deep", f"at most {MAX_INPUT_DEPTH} path components")
    if parts[0] in PROTECTED_NAMES:
        raise PathRefused("path_protected", ".env and secrets/ cannot be written in the workspace")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for p in parts):
        raise PathRefused(
            "path_component_too_long", f"each path component is at most {MAX_COMPONENT_BYTES} bytes"
        )
    return "/".join(parts)


def path_conflict(paths: list[str]) -> PathRefused | None:
    """Why input files with these (normalized) paths cannot all be written: two the same,
    or one inside another's path (``a`` and ``a/b``).  Linear in the paths' components:
    a tree of them, built once."""
    if len(set(paths)) != len(paths):
        return PathRefused("unique_paths", "two files have the same path")
    tree: dict[str, object] = {}
    for path in paths:
        node: dict[str, object] = tree
        *parents, name = path.split("/")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a file where this path needs a directory
                return PathRefused("path_conflict", f"{path} is inside another file's path")
            node = child
        inner = node.setdefault(name, path)
        if isinstance(inner, dict):  # a directory of other files where this one would be
            while isinstance(inner, dict):
                inner = next(iter(inner.values()))
            return PathRefused("path_conflict", f"{inner} is inside another file's path")
    return None


def sandbox_view(visible_paths: tuple[str, ...]) -> dict[str, object]:
    """What the stub inside needs to know of this policy, to report denials and protect files.

    The stub and its file helper run inside the sandbox without this package, so the
    supervisor hands them these with every job: the rule stays written once, here.
    """
    return {
        "workspace": WORKSPACE,
        "writableDirs": list(WRITABLE_DIRS),
        "protected": [*PROTECTED_FILES, *(f"{d}/" for d in PROTECTED_DIRS)],
        "hiddenPaths": list(HIDDEN_PATHS),
        "visiblePaths": list(visible_paths),
    }


def egress_view() -> dict[str, object]:
    """What the stub is told when the execution may reach allowed names: forward (the
    stub has the socket's path and the port from its command line, runner.bwrap), and
    the environment that points HTTP clients (urllib, requests, httpx, pip, curl; both
    spellings, as curl reads only the lower-case ones) at the proxy."""
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    env = {"NO_PROXY": "localhost,127.0.0.1,::1"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = proxy
    env.update({name.lower(): value for name, value in env.items()})
    return {"egress": {"proxy": f"127.0.0.1:{EGRESS_PORT}"}, "env": env}


def egress_option() -> str:
    """The stub's option for a sandbox that may be given a domain: where to forward."""
    return f"--egress={EGRESS_MOUNT}/{EGRESS_SOCKET}:{EGRESS_PORT}"


@dataclass(frozen=True)
class Layout:
    """What the sandbox can see of the host, all read-only."""

    support_dir: str
    """Host directory from support.prepare_support_dir: sandbox code, /etc, placeholders."""
    python: str = "/usr/bin/python3"
    ro_paths: tuple[str, ...] = ("/usr",)
    extra_ro_paths: tuple[str, ...] = field(default=())
    """More read-only paths, each mounted at the same place (e.g. a Python environment)."""
    preload: tuple[str, ...] = field(default=())
    """Modules imported while the sandbox warms up, so the code's imports of them are free."""
    egress: bool = False
    """Mount a per-sandbox egress directory (runner.bwrap's EGRESS_DIR placeholder)."""
