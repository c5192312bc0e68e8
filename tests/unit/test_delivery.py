"""What happens to the files a run wrote: returned inline, their base64 put in as it is."""

from __future__ import annotations

import base64
import json

from runner.contract import Harvested, HarvestedFile

from controller.execution.delivery import inline
from controller.execution.models import ExecuteResponse


def test_inline_files_are_put_into_the_answer_as_they_are() -> None:
    tricky = HarvestedFile('a "content":"" b.txt', b'{"content":""}\x00\xff' * 1000)
    plain = HarvestedFile("data.bin", bytes(range(256)))
    files, skipped = inline(Harvested(files=(tricky, plain)), 1 << 20)
    response = ExecuteResponse.model_validate(
        {
            "executionId": "ex-1",
            "exitCode": 0,
            "signal": None,
            "timedOut": False,
            "stdout": '"content":"" in the output, quoted',
            "stderr": "",
            "durationMs": 1.0,
            "truncated": {"stdout": False, "stderr": False},
            "violations": [],
            "usage": {"cpuUserMs": None, "cpuSystemMs": None, "peakMemoryKb": None},
            "uploads": [],
            "files": [],
            "skippedFiles": skipped,
        }
    )
    response.set_inline(files)
    answer = json.loads(response.json_bytes())
    assert [base64.b64decode(f["content"]) for f in answer["files"]] == [
        tricky.content,
        plain.content,
    ]
    assert [(f["name"], f["size"]) for f in answer["files"]] == [
        (tricky.path, len(tricky.content)),
        (plain.path, 256),
    ]
    assert answer["stdout"] == '"content":"" in the output, quoted'
