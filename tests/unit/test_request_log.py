"""What a request's log line may carry: ids and paths as the caller sent them, made safe."""

from __future__ import annotations

from controller.api.middleware import printable
from controller.logs import request_id


def test_a_path_cannot_forge_a_log_line() -> None:
    assert printable("/execute") == "/execute"
    forged = printable("/x\n2026-01-01 INFO controller.access POST /execute 200")
    assert "\n" not in forged and forged.startswith("/x\\n2026")
    assert printable("/caf\u00e9") == "/caf\u00e9"  # printable text stays as it is


def test_only_a_plain_request_id_is_kept() -> None:
    assert request_id("job-42.retry:1") == "job-42.retry:1"
    for unsafe in ("abc\n", "a b", "x" * 129, ""):
        replaced = request_id(unsafe)
        assert replaced != unsafe and len(replaced) == 32 and replaced.isalnum()
