"""The parser process: ``python -I -m controller.bodies.worker MEMORY_MB`` validates the
bodies the service sends it, one at a time, and answers each.

It runs what the service would otherwise run on its event loop for a large body (a 16
MiB body can take a second of CPU to refuse), so that the loop keeps serving everyone
else; its memory is capped (RLIMIT_AS), the service kills it past a deadline, and it
exits when the service closes its stdin.  It gets nothing of the service's environment.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from pathlib import Path
from typing import BinaryIO

from controller.bodies.frames import answer_frame, read_request
from controller.bodies.specs import SPECS
from controller.bodies.validate import Invalid, validate

MIB = 1024 * 1024


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    for spec in SPECS.values():
        _ = spec.shape  # the schemas are built before the first body, not during it
    answers.write(answer_frame(("ready", None)))
    answers.flush()
    while (asked := read_request(requests)) is not None:
        name, raw, limits = asked
        try:
            result = validate(raw, SPECS[name], limits)
            reply = ("invalid", result.errors) if isinstance(result, Invalid) else ("ok", result)
        except MemoryError:
            reply = ("too_complex", "it needs more memory than a body may take to validate")
        except RecursionError:
            reply = ("too_complex", "it nests deeper than a body may")
        del raw
        answers.write(answer_frame(reply))
        answers.flush()


def main() -> None:
    memory = int(sys.argv[1]) * MIB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # If memory runs short beside the service (a pod's limit), this goes first, not it.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    # The answers go to a descriptor of their own: a stray print or warning on stdout
    # would otherwise break a frame.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
