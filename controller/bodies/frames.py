"""The parser process's frames, each a length and its bytes.

A request is two frames: JSON naming the body's spec and its limits, then the body.  An
answer is a pickle, unpickled into request models, URLs and plain data only, so a
parser that untrusted input had subverted would get no further with what it answers.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import struct
import sys
from dataclasses import asdict
from typing import Any, BinaryIO

from pydantic import BaseModel

from controller.bodies.shape import CountLimit, Limits

HEADER = struct.Struct(">I")
URL_CLASSES = frozenset(
    {("pydantic.networks", "AnyHttpUrl"), ("pydantic_core._pydantic_core", "Url")}
)
MODEL_PACKAGES = ("controller.", "browser_agent.")


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
    limits = {path: CountLimit(**limit) for path, limit in asked["limits"].items()}
    return asked["spec"], raw, limits


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def answer_frame(value: object) -> bytes:
    payload = pickle.dumps(value, protocol=5)
    return HEADER.pack(len(payload)) + payload


class _Answers(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in URL_CLASSES:
            return getattr(importlib.import_module(module), name)
        found = (
            getattr(sys.modules.get(module), name, None)
            if module.startswith(MODEL_PACKAGES)
            else None
        )
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
        raise pickle.UnpicklingError(f"a parser's answer may not hold {module}.{name}")


def answer(payload: bytes) -> Any:
    """A parser's answer, unpickled into models, URLs and plain data only."""
    return _Answers(io.BytesIO(payload)).load()
