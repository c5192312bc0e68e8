"""Device presets: ``desktop``, ``mobile``, or any of Playwright's device names.

Pure: resolution takes Playwright's descriptor table as an argument (the agent passes
``playwright.devices``), so it is tested on a small table without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DESKTOP = "desktop"
MOBILE = "mobile"
# The presets are aliases of Playwright descriptors, so they follow its updates.
PRESETS = {DESKTOP: "Desktop Chrome", MOBILE: "Pixel 7"}
# Only what a Chromium context can take: other engines' devices are emulated in Chromium.
CONTEXT_KEYS = ("viewport", "screen", "user_agent", "device_scale_factor", "is_mobile", "has_touch")


class UnknownDevice(ValueError):
    """The name is neither a preset nor a device Playwright knows."""

    def __init__(self, name: str, accepted: list[str]) -> None:
        super().__init__(f"unknown device {name!r}")
        self.name = name
        self.accepted = accepted


def accepted_names(descriptors: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The presets first, then Playwright's device names in its order."""
    return [*PRESETS, *descriptors]


def resolve_device(
    name: str, descriptors: Mapping[str, Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """The canonical name and ``new_context`` options of a device (names match case-blind)."""
    wanted = name.strip().casefold()
    for preset, target in PRESETS.items():
        if wanted == preset:
            if target not in descriptors:
                break
            return preset, context_options(descriptors[target])
    for known, descriptor in descriptors.items():
        if known.casefold() == wanted:
            return known, context_options(descriptor)
    raise UnknownDevice(name, accepted_names(descriptors))


def known_device(name: str, names: list[str]) -> bool:
    """Whether ``name`` is one of ``names`` (case-blind), as ``resolve_device`` would match it."""
    wanted = name.strip().casefold()
    return any(known.casefold() == wanted for known in names)


def context_options(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    return {key: descriptor[key] for key in CONTEXT_KEYS if key in descriptor}
