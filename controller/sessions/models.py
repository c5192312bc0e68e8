"""What every kind of session's records share on the wire: labels and timeouts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][\w.-]*$")]
LabelValue = Annotated[str, Field(max_length=256)]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    Field(
        max_length=16,
        description="The caller's own tags (e.g. who asked); never part of the id.",
    ),
]
IdleTimeout = Annotated[
    int | None, Field(ge=1, description="Close it after this long unused (seconds).")
]
Lifetime = Annotated[
    int | None, Field(ge=1, description="Close it this long after its creation (seconds).")
]
