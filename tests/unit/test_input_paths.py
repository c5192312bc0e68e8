"""The input-file path rule (runner.policy.input_path): one rule for the API and the runner."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from runner.policy import PathRefused, input_path

from controller.execution.models import InputFile


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("a.txt", "a.txt"),
        ("./a/./b.txt", "a/b.txt"),
        ("dir/.env", "dir/.env"),
        ("é" * 127, "é" * 127),
    ],
)
def test_relative_paths_are_accepted_and_normalized(path: str, normalized: str) -> None:
    assert input_path(path) == normalized
    assert InputFile(path=path, content="").path == normalized


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/etc/passwd", "path_absolute"),
        ("../x", "path_traversal"),
        ("a/../../x", "path_traversal"),
        ("a//b", "path_empty_component"),
        ("a/", "path_empty_component"),
        (".", "path_empty_component"),
        (".env", "path_protected"),
        ("./.env", "path_protected"),
        ("secrets", "path_protected"),
        ("secrets/key", "path_protected"),
        ("a\x00b", "path_nul"),
        ("x" * 256, "path_component_too_long"),
        ("é" * 128, "path_component_too_long"),  # 256 bytes of UTF-8
    ],
)
def test_the_api_and_the_runner_refuse_the_same_paths(path: str, rule: str) -> None:
    with pytest.raises(PathRefused) as refused:
        input_path(path)
    assert refused.value.rule == rule
    with pytest.raises(ValidationError) as invalid:
        InputFile(path=path, content="")
    assert invalid.value.errors()[0]["type"] == rule
