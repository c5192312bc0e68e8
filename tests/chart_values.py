"""The chart's values table (helm/README.md) made from the `# --` comments of values.yaml.

`make chart-readme` writes it into the README between its markers; the chart's tests
check that the README holds exactly what this makes and that every value is described.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm"
BEGIN, END = "<!-- values: made by `make chart-readme` -->", "<!-- end of values -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: |$)")
DESCRIPTION = re.compile(r"^ *# -- (?P<text>.*)$")
MORE = re.compile(r"^ *#(?: (?P<text>.*))?$")


def described(text: str) -> dict[tuple[str, ...], str]:
    """Each value that a `# --` comment describes, by its path, with the comment's text."""
    found: dict[tuple[str, ...], str] = {}
    path: list[str] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        if start := DESCRIPTION.match(line):
            pending = [start["text"]]
        elif (more := MORE.match(line)) and pending is not None:
            pending.append(more["text"] or "")
        elif key := KEY.match(line):
            depth = len(key["indent"]) // 2
            path = [*path[:depth], key["key"]]
            if pending is not None:
                found[tuple(path)] = " ".join(pending).strip()
            pending = None
        else:
            pending = None
    return found


def leaves(values: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every value's path down to the scalars, lists and empty maps."""
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in leaves(value, (*path, key))]
    return [path]


def undescribed() -> list[str]:
    """Values that neither a comment of their own nor one of a map above them describes."""
    text = (CHART / "values.yaml").read_text()
    documented = described(text)
    return [
        ".".join(leaf)
        for leaf in leaves(yaml.safe_load(text))
        if not any(leaf[:n] in documented for n in range(1, len(leaf) + 1))
    ]


def table() -> str:
    """The Markdown table of every described value: its path, default and description."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = ["| value | default | description |", "| --- | --- | --- |"]
    for path, description in described(text).items():
        default: Any = values
        for key in path:
            default = default[key]
        cells = (".".join(path), json.dumps(default), description)
        name, shown, meaning = (cell.replace("|", "\\|") for cell in cells)
        rows.append(f"| `{name}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    """``readme`` with the table between its markers replaced by the current one."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    readme = CHART / "README.md"
    if missing := undescribed():
        print(f"values without a `# --` description: {', '.join(missing)}", file=sys.stderr)
        return 1
    readme.write_text(readme_with_table(readme.read_text()))
    print(f"wrote the values table of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
