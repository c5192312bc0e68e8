"""Device resolution, action validation and the agent's command line, as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_agent.devices import UnknownDevice, accepted_names, known_device, resolve_device
from browser_agent.protocol import (
    ACTION_ADAPTER,
    ClickAction,
    ScrollAction,
    WaitForAction,
    action_error_locs,
    action_rule_violation,
)
from pydantic import ValidationError

from controller.browser.local import LocalSessionBackend
from controller.settings import Settings

DESCRIPTORS: dict[str, dict[str, Any]] = {
    "Desktop Chrome": {
        "user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome",
        "viewport": {"width": 1280, "height": 720},
        "device_scale_factor": 1,
        "is_mobile": False,
        "has_touch": False,
        "default_browser_type": "chromium",
    },
    "Pixel 7": {
        "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7)",
        "viewport": {"width": 412, "height": 839},
        "device_scale_factor": 2.625,
        "is_mobile": True,
        "has_touch": True,
        "default_browser_type": "chromium",
    },
    "iPhone 13": {
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0)",
        "viewport": {"width": 390, "height": 664},
        "screen": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
        "default_browser_type": "webkit",
    },
}


def test_presets_resolve_to_playwright_descriptors() -> None:
    name, options = resolve_device("desktop", DESCRIPTORS)
    assert name == "desktop" and options["viewport"] == {"width": 1280, "height": 720}
    name, options = resolve_device("mobile", DESCRIPTORS)
    assert name == "mobile" and options["is_mobile"] is True


def test_device_names_match_case_blind_and_drop_the_browser_type() -> None:
    name, options = resolve_device("iphone 13", DESCRIPTORS)
    assert name == "iPhone 13"
    assert "default_browser_type" not in options
    assert options["screen"] == {"width": 390, "height": 844}


def test_unknown_device_lists_every_accepted_name() -> None:
    with pytest.raises(UnknownDevice) as unknown:
        resolve_device("Nokia 3310", DESCRIPTORS)
    assert unknown.value.accepted == ["desktop", "mobile", "Desktop Chrome", "Pixel 7", "iPhone 13"]


def test_known_device_agrees_with_resolution() -> None:
    names = accepted_names(DESCRIPTORS)
    assert known_device("MOBILE", names) and known_device(" iPhone 13 ", names)
    assert not known_device("iPhone 99", names)


def parse(body: str) -> Any:
    return ACTION_ADAPTER.validate_json(body)


def test_actions_are_told_apart_by_their_name() -> None:
    assert isinstance(parse('{"action": "click", "selector": "#a"}'), ClickAction)
    assert isinstance(parse('{"action": "scroll", "deltaY": 10}'), ScrollAction)
    assert isinstance(parse('{"action": "wait_for", "state": "load"}'), WaitForAction)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ('{"action": "nope"}', "action", "unknown_action"),
        ("{}", "action", "missing"),
        ('{"action": "click"}', "selector", "missing"),
        ('{"action": "fill", "selector": "a", "value": 1}', "value", "string_type"),
        (
            '{"action": "click", "selector": "a", "tabId": "one"}',
            "tabId",
            "string_pattern_mismatch",
        ),
    ],
)
def test_action_errors_name_the_field_without_the_tag(body: str, field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        parse(body)
    first = action_error_locs(invalid.value)[0]
    assert (".".join(map(str, first["loc"])), first["type"]) == (field, rule)


@pytest.mark.parametrize(
    ("body", "violation"),
    [
        ('{"action": "scroll"}', ("selector", "missing")),
        ('{"action": "scroll", "selector": "a", "deltaX": 1}', ("deltaY", "exclusive")),
        ('{"action": "wait_for"}', ("selector", "missing")),
        (
            '{"action": "wait_for", "selector": "a", "state": "networkidle"}',
            ("state", "element_state"),
        ),
        ('{"action": "wait_for", "state": "hidden"}', ("state", "load_state")),
        ('{"action": "scroll", "deltaY": -5}', None),
        ('{"action": "wait_for", "selector": "a"}', None),
        ('{"action": "click", "selector": "a"}', None),
    ],
)
def test_rules_across_fields(body: str, violation: tuple[str, str] | None) -> None:
    found = action_rule_violation(parse(body))
    assert (found[:2] if found else None) == violation


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, auth_token="a" * 32, **values)  # type: ignore[call-arg]


def test_the_backend_starts_no_agent_when_none_is_warm(tmp_path: Path) -> None:
    backend = LocalSessionBackend(settings(state_dir=tmp_path, browser_warm_agents=0))
    assert backend.device_names == [] and backend.warm_agents == 0
