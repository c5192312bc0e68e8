"""The command line on top of the client: ``sandbox-controller exec``, ``repl`` and
``browse`` (the same as ``sandbox-client ...``, where only the client is installed).

    sandbox-controller exec script.py [--file data.csv] [--stdin -] [--timeout 5s] [--out DIR]
    sandbox-controller exec script.py --context ctx-...   (in a code context, kept)
    sandbox-controller repl [--context ctx-...] [--network NAME] [--timeout 30s]
    sandbox-controller browse URL [--device D] [--screenshot out.png] [--content out.html]

``SANDBOX_URL`` and ``SANDBOX_TOKEN`` say where and as whom.  ``exec`` prints the code's
stdout and stderr as they are written (the run is streamed) and exits with its exit code
(124 when it timed out, 128 + N when signal N ended it); a failure of the platform exits
125 with its message.  Rich results are shown as a notebook would have them: an image
(a matplotlib figure, say) is saved under ``--out``, any other result is printed as text.
"""

from __future__ import annotations

import argparse
import codeop
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from sandbox_client import __version__
from sandbox_client.errors import SandboxClientError
from sandbox_client.models import (
    ContextResult,
    ExecutionResult,
    InputFile,
    Output,
    Result,
    Violation,
)
from sandbox_client.sync import Client

PLATFORM_FAILED = 125
TIMED_OUT = 124
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def duration_ms(text: str) -> int:
    """``5s``, ``500ms``, ``2m`` or plain seconds -> milliseconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 5s, 500ms or 2m")
    number, unit = float(found.group(1)), found.group(2) or "s"
    return int(number * {"ms": 1, "s": 1000, "m": 60_000}[unit])


def parser(prog: str = "sandbox-controller") -> argparse.ArgumentParser:
    """The commands; ``prog``: the program they are part of (the service's command, or the
    client's own, which only calls one)."""
    top = argparse.ArgumentParser(
        prog=prog,
        description="Serve the API (no command, or `serve`), or call one (SANDBOX_URL, "
        "SANDBOX_TOKEN)."
        if prog == "sandbox-controller"
        else "Call a sandbox controller (SANDBOX_URL, SANDBOX_TOKEN).",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("exec", help="run a Python script in a sandbox")
    run.add_argument("script", help="the script; - reads it from standard input")
    run.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH[:AS]",
        help="a file for the workspace (as its name, or as AS)",
    )
    run.add_argument("--stdin", metavar="PATH", help="the code's standard input; - for ours")
    run.add_argument("--timeout", type=duration_ms, metavar="DURATION", help="e.g. 5s, 500ms")
    run.add_argument(
        "--network",
        action="append",
        metavar="NAME",
        help="a name the code may reach (within the deployment's); repeatable",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("sandbox-files"),
        metavar="DIR",
        help="where files the code wrote are saved (default: ./sandbox-files)",
    )
    run.add_argument(
        "--context",
        metavar="ID",
        help="run in this code context (its state stays; --file is written into it, and "
        "what the code writes stays there)",
    )
    repl = commands.add_parser(
        "repl", help="an interactive Python prompt on a code context (state kept between lines)"
    )
    repl.add_argument("--context", metavar="ID", help="an open context (default: a new one)")
    repl.add_argument("--network", action="append", metavar="NAME", help="as for exec")
    repl.add_argument("--timeout", type=duration_ms, metavar="DURATION", help="per input")
    repl.add_argument(
        "--keep", action="store_true", help="leave a new context open on exit (it is printed)"
    )
    browse = commands.add_parser("browse", help="load a page in a browser session")
    browse.add_argument("url")
    browse.add_argument("--device", default="desktop", help="e.g. 'iPhone 13'")
    browse.add_argument(
        "--wait-until",
        default="load",
        choices=["load", "domcontentloaded", "networkidle", "commit"],
    )
    browse.add_argument("--screenshot", type=Path, metavar="PNG")
    browse.add_argument("--content", type=Path, metavar="HTML")
    return top


@contextmanager
def progress(what: str) -> Iterator[None]:
    """A line on stderr counting the seconds, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.2):
            sys.stderr.write(f"\r{what}... {time.monotonic() - started:.1f}s")
            sys.stderr.flush()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def input_files(specs: list[str]) -> list[InputFile]:
    files = []
    for spec in specs:
        local, _, name = spec.partition(":")
        files.append(InputFile.read(local, name or None))
    return files


def save_files(result: ExecutionResult, out: Path) -> None:
    """The returned files under ``out``; a name that would leave it is refused (what the
    service returns is the sandbox's, so it is checked here too)."""
    for file in result.files:
        relative = PurePosixPath(file.name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            print(f"sandbox-controller: refused to write {file.name!r}", file=sys.stderr)
            continue
        target = out.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)


IMAGES = ("image/png", "image/svg+xml")


class Shown:
    """A streamed run shown as it happens: output written at once, each displayed object
    once all its representations are in (saved if it has an image, else printed)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.stderr = ""
        self._display: list[Result] = []

    def show(
        self, events: Iterable[Output | Result | Violation | ExecutionResult]
    ) -> ExecutionResult:
        result = None
        for event in events:  # to the end: the stream is then closed, not left open
            if isinstance(event, Output):
                self._flush()
                stream = sys.stdout if event.stream == "stdout" else sys.stderr
                stream.write(event.text)
                stream.flush()
                if event.stream == "stderr":
                    self.stderr += event.text
            elif isinstance(event, Result):
                if self._display and self._display[0].display != event.display:
                    self._flush()
                self._display.append(event)
            elif isinstance(event, ExecutionResult):
                self._flush()
                # What the answer's stderr has beyond what streamed: the sandbox's notes.
                sys.stderr.write(event.stderr[len(self.stderr) :])
                result = event
        if result is None:
            raise SandboxClientError("the stream ended without the run's result")
        return result

    def _flush(self) -> None:
        shown, self._display = self._display, []
        images = [r for r in shown if r.type in IMAGES]
        if images:
            self.out.mkdir(parents=True, exist_ok=True)
            target = self.out / f"result-{images[0].display}{images[0].extension}"
            target.write_bytes(images[0].content)
            print(
                f"[result {images[0].display}: {images[0].type} saved as {target}]", file=sys.stderr
            )
            return
        text = next((r.data for r in shown if r.type == "text/plain"), None)
        if text is not None:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def exit_status(result: ExecutionResult) -> int:
    if result.timed_out:
        return TIMED_OUT
    if result.exit_code is not None:
        return result.exit_code
    return 128 + (result.signal or 9)


def run_exec(args: argparse.Namespace) -> int:
    code = sys.stdin.read() if args.script == "-" else Path(args.script).read_text()
    stdin = None
    if args.stdin is not None:
        stdin = sys.stdin.read() if args.stdin == "-" else Path(args.stdin).read_text()
    if args.context is not None:
        return run_in_context(args.context, code, stdin, args)
    with Client() as client:
        events = client.stream(
            code,
            files=input_files(args.file),
            stdin=stdin,
            timeout_ms=args.timeout,
            network=args.network,
        )
        result = Shown(args.out).show(events)
    if result.files:
        save_files(result, args.out)
    return exit_status(result)


def run_in_context(context_id: str, code: str, stdin: str | None, args: argparse.Namespace) -> int:
    with Client() as client, client.context(context_id=context_id) as context:
        for file in input_files(args.file):
            context.files.write(file.path, file.content)
        events = context.stream(code, stdin=stdin, timeout_ms=args.timeout)
        result = Shown(args.out).show(events)
    if isinstance(result, ContextResult) and result.restarted:
        print("[the context's interpreter was restarted: its variables are gone]", file=sys.stderr)
    return exit_status(result)


def repl_source(text: str) -> str:
    """What one input becomes: a lone expression shows its value, as at Python's prompt."""
    try:
        compile(text, "<input>", "eval")
    except SyntaxError:
        return text
    return f"_ = ({text}\n)\nif _ is not None:\n    print(repr(_))"


def read_input() -> str | None:
    """One complete input (more lines while it is unfinished); None at the end."""
    lines: list[str] = []
    while True:
        try:
            line = input("... " if lines else ">>> ")
        except EOFError:
            return None
        lines.append(line)
        text = "\n".join(lines)
        try:
            complete = codeop.compile_command(text, "<input>", "exec")
        except SyntaxError:
            return text  # the service reports it, as Python would
        if complete is not None and (len(lines) == 1 or not line.strip()):
            return text


def run_repl(args: argparse.Namespace) -> int:
    history = Path.home() / ".sandbox_controller_history" if sys.stdin.isatty() else None
    if history is not None:  # a person typing: line editing, and the history kept
        with contextlib.suppress(ImportError, OSError):
            import readline

            readline.read_history_file(history)
    with Client() as client:
        context = client.context(network=args.network, context_id=args.context).open()
        print(f"context {context.context_id} (Ctrl-D to leave)", file=sys.stderr)
        try:
            while (text := read_input()) is not None:
                if not text.strip():
                    continue
                result = context.run(repl_source(text), timeout_ms=args.timeout)
                sys.stdout.write(result.stdout)
                sys.stdout.flush()
                sys.stderr.write(result.stderr)
                if result.restarted:
                    print("[interpreter restarted: variables are gone]", file=sys.stderr)
        finally:
            if args.keep or args.context:
                print(f"context {context.context_id} left open", file=sys.stderr)
            else:
                context.close()
            if history is not None:
                with contextlib.suppress(NameError, OSError):
                    readline.write_history_file(history)
    return 0


def run_browse(args: argparse.Namespace) -> int:
    with Client() as client:
        with progress("opening a browser"):
            session = client.browser(args.device).__enter__()
        try:
            with progress("loading"):
                page = session.navigate(args.url, wait_until=args.wait_until)
            if args.content is not None:
                args.content.write_text(session.content())
            if args.screenshot is not None:
                args.screenshot.write_bytes(session.screenshot())
        finally:
            session.close()
    print(json.dumps(page))
    return 0


def main(argv: list[str] | None = None, prog: str = "sandbox-controller") -> int:
    args = parser(prog).parse_args(argv)
    try:
        commands = {"exec": run_exec, "repl": run_repl, "browse": run_browse}
        return commands[args.command](args)
    except (SandboxClientError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return PLATFORM_FAILED


def client_main() -> None:
    """``sandbox-client``: the client distribution's own command (no service in it)."""
    sys.exit(main(prog="sandbox-client"))
