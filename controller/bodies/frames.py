"""The parser process's frames, each a length and its bytes.

A request is two frames: JSON naming the body's spec and its limits, then the body.  An
answer is one frame of JSON: ``{"kind": "ok"|"invalid"|"too_complex", "errors":
[...], "reason": "..."}``, read strictly: whatever a parser answers, the service takes it
for a pass or a refusal, nothing more.  The parser is the service's own code, run as the
service's user: it bounds the body's cost (memory, time, the event loop), not what an
exploit of the JSON parser itself could do.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from typing import Any, BinaryIO

from controller.bodies.shape import Limit, Limits

HEADER = struct.Struct(">I")


def request_frames(spec: str, raw: bytes, limits: Limits) -> bytes:
    meta = json.dumps({"spec": spec, "limits": {k: asdict(v) for k, v in limits.items()}})
    return HEADER.pack(len(meta)) + meta.encode() + HEADER.pack(len(raw)) + raw


def read_request(stream: BinaryIO) -> tuple[str, bytes, Limits] | None:
    """What the service asks (a parser's side); None when the service has gone."""
    meta = _read_frame(stream)
    raw = _read_frame(stream) if meta is not None else None
    if meta is None or raw is None:
        return None
    asked = json.loads(meta)
    limits = {path: Limit(**limit) for path, limit in asked["limits"].items()}
    return asked["spec"], raw, limits


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def answer_frame(kind: str, errors: list[dict[str, Any]] | None = None, reason: str = "") -> bytes:
    payload = json.dumps({"kind": kind, "errors": errors or [], "reason": reason}).encode()
    return HEADER.pack(len(payload)) + payload


class BadAnswer(ValueError):
    """A parser's answer that is not one."""


def answer(payload: bytes) -> tuple[str, list[dict[str, Any]], str]:
    """(kind, errors, reason) of a parser's answer; BadAnswer for anything else."""
    try:
        found = json.loads(payload)
    except (ValueError, RecursionError):
        raise BadAnswer("not JSON") from None
    if not isinstance(found, dict):
        raise BadAnswer("not an object")
    kind, errors, reason = found.get("kind"), found.get("errors"), found.get("reason")
    if kind not in ("ok", "invalid", "too_complex") or not isinstance(errors, list):
        raise BadAnswer(f"kind {kind!r}")
    clean = []
    for error in errors[:50]:
        if not isinstance(error, dict):
            raise BadAnswer("an error that is not an object")
        loc = error.get("loc", [])
        clean.append(
            {
                "type": str(error.get("type", "invalid"))[:64],
                "loc": tuple(p if isinstance(p, int) else str(p)[:256] for p in loc[:16])
                if isinstance(loc, list)
                else (),
                "msg": str(error.get("msg", ""))[:1000],
                **(
                    {"ctx": {str(k)[:64]: str(v)[:1000] for k, v in error["ctx"].items()}}
                    if isinstance(error.get("ctx"), dict)
                    else {}
                ),
            }
        )
    return kind, clean, str(reason)[:300]
