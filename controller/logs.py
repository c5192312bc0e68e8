"""The service's log: text or JSON lines, each carrying the request it was written for.

A request's id (its ``X-Request-ID``, or one made here) and the caller's key name live
in a context variable for as long as the request is served, so every line written on
its behalf, in any module, carries them.  What is never logged: code, output, files,
tokens, query strings.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

REQUEST_ID_HEADER = "X-Request-ID"
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
"""A caller's id is kept if it could not forge a log line or a header (no spaces, no
control characters); anything else is replaced by one of ours."""


@dataclass
class RequestContext:
    request_id: str
    key: str | None = None
    """The name of the caller's key, once authenticated (never the key itself)."""


current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def request_id(given: str | None) -> str:
    """The caller's id when it is a safe one, else a new one."""
    if given is not None and _GIVEN_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class _ContextFilter(logging.Filter):
    """Puts the request's id and key on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current.get()
        record.request_id = context.request_id if context else None
        record.key = context.key if context else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, key, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "key"):
            value = getattr(record, name, None)
            if value is not None:
                line["requestId" if name == "request_id" else name] = value
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with ``[request id]`` when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request_id", None)
        record.context = f" [{request}]" if request else ""
        return super().format(record)


def configure(log_format: Literal["text", "json"]) -> None:
    """The root logger writes to stderr in ``log_format``, uvicorn's loggers included."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
