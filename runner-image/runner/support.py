"""The support directory: the few synthetic files every sandbox mounts read-only."""

from __future__ import annotations

import json
import marshal
import os
import shutil
import subprocess
from pathlib import Path

from runner.bwrap import SANDBOX_CODE
from runner.policy import ETC_FILES, SANDBOX_GID, SANDBOX_UID

PASSWD = (
    "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost ip6-loopback\n"


def python_env_root(python: str) -> str | None:
    """The root of the virtual environment ``python`` belongs to, if it is in one.

    The sandbox mounts it read-only at the same place, so the interpreter finds its
    packages there.
    """
    root = Path(python).parent.parent
    return str(root) if (root / "pyvenv.cfg").is_file() else None


COMPILE = "import py_compile, sys; py_compile.compile(sys.argv[1], sys.argv[2], doraise=True)"


def prepare_support_dir(
    path: str | os.PathLike[str], python: str, etc_files: tuple[str, ...] = ETC_FILES
) -> str:
    """Create (or refresh) the support directory and return its absolute path.

    Everything in it is world-readable and nothing is writable by the sandbox: the
    sandbox runs as an unprivileged uid and mounts these files read-only.  The sandbox-side
    code is compiled by ``python``, the sandbox's interpreter, so its bytecode matches.
    """
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    code_dir = root / "sandbox"
    code_dir.mkdir(exist_ok=True)
    for source_name, compiled_name in SANDBOX_CODE.items():
        source = root / source_name
        shutil.copyfile(Path(__file__).with_name(source_name), source)
        done = subprocess.run(
            [python, "-I", "-c", COMPILE, str(source), str(code_dir / compiled_name)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot compile {source_name} with {python}: {done.stderr}")
    _seed_tmp(code_dir / "tmp-seed", python)
    (code_dir / "site.marshal").write_bytes(marshal.dumps(site_config(python)))
    _build_etc(root / "etc", etc_files)
    (root / "empty-file").write_text("")
    (root / "empty-dir").mkdir(exist_ok=True)
    for entry in (root, *root.rglob("*")):
        if not entry.is_symlink():  # chmod would follow a link to the host's file
            entry.chmod(0o755 if entry.is_dir() else 0o644)
    return str(root)


# Run once by the sandbox's interpreter with HOME pointing at the seed: caches that
# libraries build on first use (matplotlib's font list takes about a second) are made
# here once, and every sandbox starts with a copy in its private /tmp (its HOME).
WARM_CACHES = """
try:
    import matplotlib.font_manager
except ImportError:
    pass
"""


def _seed_tmp(seed: Path, python: str) -> None:
    shutil.rmtree(seed, ignore_errors=True)
    seed.mkdir()
    env = {"HOME": str(seed), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "LANG": "C.UTF-8"}
    subprocess.run(
        [python, "-I", "-c", WARM_CACHES], env=env, capture_output=True, check=False, timeout=120
    )


def _build_etc(etc: Path, etc_files: tuple[str, ...]) -> None:
    """The sandbox's /etc: copies of ``etc_files`` that exist here, links kept as links."""
    shutil.rmtree(etc, ignore_errors=True)
    etc.mkdir()
    for source in map(Path, etc_files):
        if not source.exists():
            continue
        target = etc / source.relative_to("/etc")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("hosts", HOSTS)):
        (etc / name).write_text(text)


PATH_AND_PREFIXES = "import json, sys; print(json.dumps([sys.path, sys.prefix, sys.exec_prefix]))"


def site_config(python: str) -> dict[str, object]:
    """The paths and prefixes the site module gives ``python``, for the stub to set itself."""

    def ask(*flags: str) -> tuple[list[str], str, str]:
        done = subprocess.run(
            [python, *flags, "-c", PATH_AND_PREFIXES],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        path, prefix, exec_prefix = json.loads(done.stdout)
        return [str(p) for p in path], str(prefix), str(exec_prefix)

    (with_site, prefix, exec_prefix), (without_site, _, _) = ask("-I"), ask("-I", "-S")
    bare = set(without_site)
    return {
        "paths": [p for p in with_site if p not in bare],
        "prefix": prefix,
        "exec_prefix": exec_prefix,
    }
