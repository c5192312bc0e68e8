"""The parser processes: large request bodies are validated there, never on the event loop.

A body over INLINE_BYTES is sent to one of PARSE_WORKERS processes
(controller.bodies.worker, at a lower CPU priority than the service and its sandboxes),
which parses it and checks its sizes; only a body that passes is validated by its
model, in the service, at a cost in proportion to it.
Each caller has at most one body in the parsers at a time, and callers take turns
(controller.fairness), so a caller who sends a hundred large bodies delays another's by
at most one body.  A parser that takes longer than PARSE_TIMEOUT_S is killed and the
body refused (422); a dead parser is replaced by the next body that needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from controller.bodies.frames import HEADER, BadAnswer, answer, request_frames
from controller.bodies.shape import Limits
from controller.bodies.specs import BodySpec
from controller.bodies.validate import Invalid
from controller.errors import InvalidRequest, ServiceUnavailable
from controller.fairness import FairSlots

log = logging.getLogger(__name__)

INLINE_BYTES = 64 * 1024
"""Bodies up to this size are validated in the service: the worst of them costs less
than a millisecond or two, less than the trip to a parser."""
READY_TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 1024 * 1024
PARSER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


Answer = tuple[str, list[dict[str, Any]], str]
"""(kind, errors, reason): controller.bodies.frames.answer's."""


class ParserFailed(Exception):
    """The parser process died or broke the protocol."""


class _Parser:
    """One parser process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, memory_mb: int) -> _Parser:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-m",
            "controller.bodies.worker",
            str(memory_mb),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=PARSER_ENV,
            limit=1024 * 1024,
        )
        parser = cls(proc)
        try:
            kind, _, _ = await asyncio.wait_for(parser._read(), READY_TIMEOUT_S)
        except (TimeoutError, ParserFailed) as exc:
            parser.kill()
            raise ParserFailed(f"the parser process did not start: {exc}") from None
        except BaseException:  # cancelled while it starts: nobody else knows of it
            parser.kill()
            raise
        if kind != "ok":
            parser.kill()
            raise ParserFailed(f"the parser process said {kind!r} first")
        return parser

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def ask(self, spec: str, raw: bytes, limits: Limits) -> Answer:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(request_frames(spec, raw, limits))
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ParserFailed(f"the parser process is gone: {exc}") from None
        return await self._read()

    async def _read(self) -> Answer:
        assert self.proc.stdout is not None
        try:
            (size,) = HEADER.unpack(await self.proc.stdout.readexactly(HEADER.size))
            if size > MAX_ANSWER_BYTES:
                raise ParserFailed(f"the parser process answered {size} bytes")
            return answer(await self.proc.stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            raise ParserFailed("the parser process exited") from None
        except BadAnswer as exc:
            raise ParserFailed(f"the parser process answered badly: {exc}") from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    async def close(self) -> None:
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.stdin is not None:
            # A write the kill broke is reported there: taken, it is not logged as lost.
            with contextlib.suppress(OSError):
                await self.proc.stdin.wait_closed()


class ParserPool:
    """PARSE_WORKERS parser processes, started when a large body first needs one."""

    def __init__(self, workers: int, timeout_s: float, memory_mb: int) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._slots = FairSlots(workers)
        self._idle: list[_Parser] = []
        self._all: set[_Parser] = set()

    async def refusal(
        self, raw: bytes, spec: BodySpec, limits: Limits, caller: str
    ) -> Invalid | None:
        """Why the body's JSON or sizes are refused (None: they pass); InvalidRequest when
        it is too costly to tell."""
        async with self._slots.held(caller, 1):
            parser = await self._take()
            try:
                async with asyncio.timeout(self.timeout_s):
                    kind, errors, reason = await parser.ask(spec.name, raw, limits)
            except TimeoutError:
                await self._discard(parser)
                raise too_complex(f"it takes more than {self.timeout_s:g} s to validate") from None
            except ParserFailed as exc:
                await self._discard(parser)
                log.warning("body parser failed: %s", exc)
                # Killed for its memory, most likely: this body is what it was parsing.
                raise too_complex("its parser ran out of memory") from None
            except BaseException:
                await self._discard(parser)  # cancelled mid-answer: its pipe is out of step
                raise
            self._idle.append(parser)
        if kind == "ok":
            return None
        if kind == "invalid":
            return Invalid(errors)
        raise too_complex(reason)

    async def _take(self) -> _Parser:
        while self._idle:
            parser = self._idle.pop()
            if parser.alive:
                return parser
            await self._discard(parser)
        try:
            parser = await _Parser.start(self.memory_mb)
        except (OSError, ParserFailed) as exc:
            raise ServiceUnavailable(f"cannot validate a large body: {exc}") from None
        self._all.add(parser)
        return parser

    async def _discard(self, parser: _Parser) -> None:
        self._all.discard(parser)
        await parser.close()

    async def close(self) -> None:
        self._idle.clear()
        for parser in list(self._all):
            await self._discard(parser)


def too_complex(why: str) -> InvalidRequest:
    return InvalidRequest("body", "too_complex", f"the body was refused: {why}")
