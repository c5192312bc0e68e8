"""The input-file path rule (runner.policy.input_path): one rule for the API and the runner."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from runner.policy import MAX_INPUT_DEPTH, PathRefused, input_path, path_conflict

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


@pytest.mark.parametrize(
    ("paths", "rule", "named"),
    [
        (["a", "b", "a"], "unique_paths", None),
        (["a", "a/b"], "path_conflict", "a/b"),
        (["a/b/c", "a/b"], "path_conflict", "a/b/c"),
        (["x/y", "x/y/z/w"], "path_conflict", "x/y/z/w"),
    ],
)
def test_conflicting_paths_are_named(paths: list[str], rule: str, named: str | None) -> None:
    refused = path_conflict(paths)
    assert refused is not None and refused.rule == rule
    if named is not None:
        assert refused.message == f"{named} is inside another file's path"


def test_paths_that_share_directories_do_not_conflict() -> None:
    assert path_conflict(["a/b", "a/c", "a/d/e", "f"]) is None


def test_deep_paths_are_refused_and_checking_many_stays_linear() -> None:
    assert input_path("/".join(["d"] * MAX_INPUT_DEPTH))
    with pytest.raises(PathRefused) as refused:
        input_path("/".join(["d"] * (MAX_INPUT_DEPTH + 1)))
    assert refused.value.rule == "path_too_deep"
    # 15,000 paths of the deepest kind: one pass over their components.
    deep = "/".join(["d"] * (MAX_INPUT_DEPTH - 1))
    assert path_conflict([f"{deep}/f{i}" for i in range(15_000)]) is None
