"""Inside the sandbox: rich results, as a notebook cell gives them, sent out as event lines.

The code's process writes one line per event on the events descriptor, a pipe read
outside the sandbox (runner.results), where every line is untrusted and validated:

    {"result": {MIME: DATA, ...}, "omitted": {MIME: SIZE, ...}}    one displayed object
    {"violation": {"kind", "target", "detail"}}                    (the stub's audit hook)

A result is one object's representations: ``text/plain`` (its repr) and whichever of
``text/html``, ``application/json``, ``image/png``, ``image/svg+xml``, ``text/markdown``
and ``text/latex`` it offers through the IPython ``_repr_*_`` methods; images are
base64, JSON is its text.  A representation that does not fit what is left of the run's
results budget is not sent: its size is, under ``omitted``.

Objects are displayed by ``display(obj)`` (a builtin in the sandbox, as in a notebook),
by the value of the code's trailing expression (``split``), and by matplotlib: figures
shown with ``plt.show()`` or still open when the code ends become ``image/png`` (and
``image/svg+xml`` when the job asks for it), without the code saving anything.

Standard library only, and nothing imported until it is needed: this is loaded into every
sandbox.  Compiled into the support directory as ``_display.pyc``.
"""

from __future__ import annotations

import os
import sys
from _json import encode_basestring_ascii as _quoted  # the C encoder, without json's imports
from _thread import RLock

TYPE_CHECKING = False  # typing's own costs an import at every start; mypy knows the name
if TYPE_CHECKING:
    import ast

REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
    ("_repr_png_", "image/png"),
    ("_repr_svg_", "image/svg+xml"),
)
FIGURE_FORMATS = ("image/png", "image/svg+xml")
MAX_REPR_CHARS = 1 << 26
"""A repr is cut here before it is measured: what is over the budget is omitted anyway."""


class Channel:
    """Where this process's events go, and what is left of the run's results budget."""

    def __init__(self) -> None:
        self.fd = -1
        self.room = 0
        self.figures: tuple[str, ...] = ("image/png",)
        # A line longer than a pipe's atomic write must not be cut by another thread's.
        self._lock = RLock()

    def start(self, fd: int, budget: int, figures: object) -> None:
        """A run begins: ``budget`` bytes of results, figures in ``figures`` (MIME types)."""
        self.fd, self.room = fd, budget
        wanted = tuple(f for f in (figures or ()) if f in FIGURE_FORMATS)  # type: ignore[attr-defined]
        self.figures = wanted or ("image/png",)

    def write(self, line: str) -> None:
        if self.fd >= 0:
            _flush_streams()  # what was printed before the object comes before it
            self.write_line(line)

    def write_line(self, line: str) -> None:
        """One whole line, whichever thread writes it (the stub's audit hook too)."""
        with self._lock:
            view = memoryview(line.encode("ascii", "backslashreplace") + b"\n")
            try:
                while view and self.fd >= 0:
                    view = view[os.write(self.fd, view) :]
            except OSError:
                self.fd = -1  # nobody reads any more: the run is over


CHANNEL = Channel()


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: S112 - a broken stream is the code's own business
            continue


def send(representations: dict[str, str]) -> None:
    """One displayed object: what fits the budget is sent, the rest named with its size.

    The budget is counted in what the line holds (the data escaped as JSON, as it is
    read outside), so that what fits here is never too long for the reader there.
    """
    kept, omitted = [], []
    for mime, data in representations.items():
        quoted = _quoted(data) if len(data) + len(mime) + 8 <= CHANNEL.room else ""
        if quoted and len(quoted) + len(mime) + 8 <= CHANNEL.room:
            CHANNEL.room -= len(quoted) + len(mime) + 8
            kept.append(f"{_quoted(mime)}:{quoted}")
        else:
            omitted.append(f"{_quoted(mime)}:{len(data)}")
    line = '{"result":{' + ",".join(kept) + "}"
    if omitted:
        line += ',"omitted":{' + ",".join(omitted) + "}"
    CHANNEL.write(line + "}")


def display(*objects: object) -> None:
    """Show each object as a result, as a notebook's ``display`` does.  A figure shown is
    closed, so that the end of the run does not show it again."""
    for obj in objects:
        representations = represent(obj)
        if representations:
            send(representations)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None and _is_figure(obj):
            try:
                pyplot.close(obj)
            except Exception:  # noqa: S110 - a figure pyplot does not know stays open
                pass


def represent(obj: object) -> dict[str, str]:
    """The object's representations by MIME type; methods that fail are skipped."""
    if _is_figure(obj):
        return _figure(obj)
    found: dict[str, str] = {}
    bundle = _call(obj, "_repr_mimebundle_")
    if isinstance(bundle, tuple) and bundle:
        bundle = bundle[0]
    if isinstance(bundle, dict):
        for mime, value in bundle.items():
            text = _as_text(mime, value)
            if text is not None:
                found[mime] = text
    for method, mime in REPR_METHODS:
        if mime not in found:
            text = _as_text(mime, _call(obj, method))
            if text is not None:
                found[mime] = text
    if "text/plain" not in found:
        try:
            found["text/plain"] = repr(obj)[:MAX_REPR_CHARS]
        except Exception as exc:  # a broken __repr__ is shown, not raised
            found["text/plain"] = f"<{type(obj).__name__} object: repr failed: {exc!r}>"
    return {"text/plain": found.pop("text/plain"), **found}


def _call(obj: object, method: str) -> object:
    """``obj.method()`` if the class defines it (never the instance's ``__getattr__``)."""
    if not hasattr(type(obj), method):
        return None
    try:
        return getattr(obj, method)()
    except Exception:  # a representation that fails is simply not offered
        return None


def _as_text(mime: str, value: object) -> str | None:
    if value is None or not isinstance(mime, str):
        return None
    if isinstance(value, tuple) and value:  # (data, metadata)
        value = value[0]
    if mime == "application/json":
        import json

        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return None
    if mime.startswith("image/") and mime != "image/svg+xml":
        if isinstance(value, str):
            return value  # already base64, as IPython's display protocol has it
        if isinstance(value, (bytes, bytearray)):
            import binascii

            return binascii.b2a_base64(bytes(value), newline=False).decode("ascii")
        return None
    return value[:MAX_REPR_CHARS] if isinstance(value, str) else None


def _is_figure(obj: object) -> bool:
    matplotlib_figure = sys.modules.get("matplotlib.figure")
    return matplotlib_figure is not None and isinstance(obj, matplotlib_figure.Figure)


def _figure(figure: object) -> dict[str, str]:
    import binascii
    import io

    found = {"text/plain": f"<Figure size {_size(figure)}>"}
    for mime in CHANNEL.figures:
        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format=mime.split("/")[1].split("+")[0], bbox_inches="tight")  # type: ignore[attr-defined]
        except Exception:  # noqa: S112 - a figure that cannot be drawn is left out
            continue
        data = buffer.getvalue()
        found[mime] = (
            data.decode("utf-8", "replace")
            if mime == "image/svg+xml"
            else binascii.b2a_base64(data, newline=False).decode("ascii")
        )
    return found


def _size(figure: object) -> str:
    try:
        width, height = figure.get_size_inches() * figure.dpi  # type: ignore[attr-defined]
        return f"{int(width)}x{int(height)}"
    except Exception:
        return "unknown"


def show_figures() -> None:
    """Every open matplotlib figure as a result, then closed (``plt.show()``, and the end
    of a run): nothing happens unless the code imported pyplot."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        numbers = pyplot.get_fignums()
        for number in numbers:
            display(pyplot.figure(number))
        pyplot.close("all")
    except Exception:  # noqa: S110 - the code's own matplotlib state is broken: no figures
        pass


class _PyplotFinder:
    """Makes ``plt.show()`` show: pyplot's ``show`` is replaced once it is imported (a
    meta path finder, so nothing of matplotlib is imported before the code does)."""

    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != "matplotlib.pyplot":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)  # type: ignore[arg-type]
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: object) -> None:
            original(module)  # type: ignore[arg-type]
            module.show = _show  # type: ignore[attr-defined]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _show(*args: object, **kwargs: object) -> None:
    show_figures()


def install() -> None:
    """In the code's process, before the code: ``display`` as a builtin, and pyplot hooked
    (once: a context's interpreter is set up again at each call)."""
    import builtins

    builtins.display = display  # type: ignore[attr-defined]
    if not any(isinstance(finder, _PyplotFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PyplotFinder())  # type: ignore[arg-type]


def split(tree: ast.Module, code: str) -> tuple[ast.Module, ast.Expression | None]:
    """A parsed cell as its statements and its trailing expression, whose value is shown
    (unless the code ends with ``;``, as in a notebook)."""
    body = tree.body
    if not body or type(body[-1]).__name__ != "Expr" or code.rstrip().endswith(";"):
        return tree, None
    import _ast

    last = body.pop()
    expression = _ast.Expression(body=last.value)  # type: ignore[attr-defined]
    return tree, expression


def show_value(value: object) -> None:
    """The trailing expression's value, unless it is None (as a notebook's Out[])."""
    if value is not None:
        display(value)
