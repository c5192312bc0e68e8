"""A body's sizes checked against its schema before any per-item work is done on it.

Pydantic validates every item of a list before it looks at the list's length, and makes
an error for every unknown field: a body of a million of either costs seconds of CPU
before its 422.  This walk over the parsed JSON, guided by the model's own JSON schema
(the one rule, written once, in the model), refuses such a body from its sizes alone:
unknown fields (MAX_NAMED of them named, then their number), a list over its
``maxItems``, an object over its ``maxProperties``, a string over its ``maxLength``, or
any of them over the request's own limit (a setting, e.g. MAX_INPUT_FILES,
MAX_CODE_BYTES).  It visits each value at most once, never deeper than the schema goes,
and stops at the first refusal.  What passes costs pydantic work in proportion to the
body, and no more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_NAMED = 10
"""Unknown fields named one by one; beyond them, one error gives how many there are."""

Error = dict[str, Any]
"""An error in pydantic's shape: ``type`` (the rule), ``loc``, ``msg``."""


@dataclass(frozen=True)
class Limit:
    """A request's own limit on a value's size (a setting), with its rule and message:
    a list's items, an object's fields, a string's characters (a string's UTF-8 bytes
    are at least as many: a byte limit on more characters is broken for sure)."""

    most: int
    rule: str
    message: str


Limits = Mapping[str, Limit]
"""By field path: ``files``, ``code``, ``network.allowedDomains`` (list items as ``[]``)."""


class Shape:
    """The structural rules of one JSON schema (pydantic's, with its ``$defs``)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._root = schema
        self._defs: dict[str, Any] = schema.get("$defs", {})

    def errors(self, value: object, limits: Limits) -> list[Error]:
        """The first refusal of ``value``'s counts, as errors; [] when they are within."""
        found: list[Error] = []
        self._walk(self._root, value, (), "", limits, found)
        return found

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while True:
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                schema = self._defs.get(ref.removeprefix("#/$defs/"), {})
            elif len(schema.get("allOf", ())) == 1:
                schema = schema["allOf"][0]
            else:
                return schema

    def _branch(self, schema: dict[str, Any], value: object) -> dict[str, Any] | None:
        """The one branch of a union that ``value`` can be checked against, if any."""
        choices = schema.get("oneOf") or schema.get("anyOf")
        if not choices:
            return schema
        tag = schema.get("discriminator")
        if isinstance(tag, dict) and isinstance(value, dict):
            chosen = value.get(tag.get("propertyName"))  # any JSON: a list is unhashable
            ref = tag.get("mapping", {}).get(chosen) if isinstance(chosen, str) else None
            return self._resolve({"$ref": ref}) if isinstance(ref, str) else None
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else ""
        fits = [s for s in map(self._resolve, choices) if s.get("type") == kind]
        return fits[0] if len(fits) == 1 else None

    def _walk(
        self,
        schema: dict[str, Any],
        value: object,
        loc: tuple[str | int, ...],
        path: str,
        limits: Limits,
        found: list[Error],
    ) -> None:
        branch = self._branch(self._resolve(schema), value)
        if branch is None or found:
            return
        limit = limits.get(path)
        if isinstance(value, str) and branch.get("type") == "string":
            most = limit.most if limit else branch.get("maxLength")
            if isinstance(most, int) and len(value) > most:
                if limit is None:
                    message = f"String should have at most {most} characters"  # pydantic's
                    limit = Limit(most, "string_too_long", message)
                found.append({"type": limit.rule, "loc": loc, "msg": limit.message})
        elif isinstance(value, dict) and branch.get("type") == "object":
            self._object(branch, value, loc, path, limits, found)
        elif isinstance(value, list) and branch.get("type") == "array":
            most = limit.most if limit else branch.get("maxItems")
            if isinstance(most, int) and len(value) > most:
                rule, message = (
                    (limit.rule, limit.message)
                    if limit
                    else ("too_long", f"List should have at most {most} items, not {len(value)}")
                )
                found.append({"type": rule, "loc": loc, "msg": message})
                return
            items = branch.get("items")
            if isinstance(items, dict) and _checked(self._resolve(items)):
                for index, item in enumerate(value):
                    self._walk(items, item, (*loc, index), f"{path}[]", limits, found)

    def _object(
        self,
        schema: dict[str, Any],
        value: dict[str, Any],
        loc: tuple[str | int, ...],
        path: str,
        limits: Limits,
        found: list[Error],
    ) -> None:
        fields: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if extra is False:
            unknown = [name for name in value if name not in fields]
            for name in unknown[:MAX_NAMED]:
                found.append(
                    {"type": "extra_forbidden", "loc": (*loc, name), "msg": "unknown field"}
                )
            if len(unknown) > MAX_NAMED:
                found.append(
                    {
                        "type": "unknown_fields",
                        "loc": loc,
                        "msg": f"{len(unknown)} unknown fields (the first {MAX_NAMED} named)",
                    }
                )
            if found:
                return
        most = schema.get("maxProperties")
        if isinstance(most, int) and len(value) > most:
            message = f"Dictionary should have at most {most} items, not {len(value)}"
            found.append({"type": "too_long", "loc": loc, "msg": message})
            return
        for name, field in fields.items():
            if name in value:
                self._walk(field, value[name], (*loc, name), _join(path, name), limits, found)
        if isinstance(extra, dict) and _checked(self._resolve(extra)):
            for name, item in value.items():
                if name not in fields:
                    self._walk(extra, item, (*loc, name), _join(path, "*"), limits, found)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _checked(schema: dict[str, Any]) -> bool:
    """Whether values of ``schema`` have sizes to check (objects, lists, unions, strings
    with a maximum)."""
    kind = schema.get("type")
    return (
        kind in ("object", "array")
        or "anyOf" in schema
        or "oneOf" in schema
        or (kind == "string" and "maxLength" in schema)
    )
