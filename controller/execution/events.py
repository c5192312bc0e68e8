"""What a run reports while it runs, on its way to a caller who asked for a stream.

The backends tell a ``RunEvents`` each piece of output, result and violation as they
read it (runner.contract.Event); the service tells it when the run has begun (past
validation and admission: from then on the answer is a stream, never an HTTP error).
"""

from __future__ import annotations

from typing import Protocol

from runner.contract import Event


class RunEvents(Protocol):
    """The events of one run (an execution, or a context's call)."""

    def started(self) -> None:
        """The run has been admitted and is about to begin."""

    def __call__(self, event: Event) -> None:
        """One event, in the order it happened."""
