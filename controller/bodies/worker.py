"""The parser process: ``python -I -m controller.bodies.worker MEMORY_MB`` checks the
bodies the service sends it, one at a time, and answers each.

It parses a large body and checks its sizes (controller.bodies.validate.refusal): what
the service would otherwise do on its event loop, where a 16 MiB body can cost a second
of CPU to refuse.  Its memory is capped (RLIMIT_AS), its CPU comes after the service's,
the service kills it past a deadline, and it exits when the service closes its stdin.
It gets nothing of the service's environment.
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
from controller.bodies.validate import refusal

MIB = 1024 * 1024
PARSER_NICENESS = 10


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    for spec in SPECS.values():
        _ = spec.shape  # the schemas are built before the first body, not during it
    answers.write(answer_frame("ok"))  # ready
    answers.flush()
    while (asked := read_request(requests)) is not None:
        name, raw, limits = asked
        try:
            refused = refusal(raw, SPECS[name], limits)
            reply = answer_frame("invalid", refused.errors) if refused else answer_frame("ok")
        except MemoryError:
            reply = answer_frame("too_complex", reason="its parser ran out of memory")
        except RecursionError:
            reply = answer_frame("too_complex", reason="it nests deeper than a body may")
        del raw
        answers.write(reply)
        answers.flush()


def main() -> None:
    memory = int(sys.argv[1]) * MIB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # If memory runs short beside the service (a pod's limit), this goes first, not it;
    # and its CPU is what the service and the sandboxes leave: a caller who sends large
    # bodies without end spends this process's time, not everyone's.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    os.nice(PARSER_NICENESS)
    # The answers go to a descriptor of their own: a stray print or warning on stdout
    # would otherwise break a frame.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
