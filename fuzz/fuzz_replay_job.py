"""Fuzz the replay fleet's wire parsers: `verifier.fleet.parse_job` (a job as a worker
reads it off the queue) and `parse_outcome` (an outcome as a front end reads it back).

Crash: any exception other than a `BytereplayError`; a job that parses but does not
write back to the same job; an outcome that parses but does not round-trip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.fleet", "verifier.replay", "bytereplay"]):
    from bytereplay.record import RunRecord
    from verifier.fleet import Job, parse_job, parse_outcome
    from verifier.replay import ReplayOutcome, outcome_to_wire

RECORD = RunRecord.from_json((harness.REPO / "fixtures" / "records" / "complete.json").read_bytes())
JOB = Job("job-0123456789", str(RECORD.get("model.digest")), "full",
          {"input": "hi", "template": "{input}", "decode": {"max_new_tokens": 4}}, RECORD)
OUTCOME = ReplayOutcome("inconclusive", ({"field": "torch", "recorded": "a", "replayed": "b"},),
                        reason="r", seconds=0.5, facts={"request": "ok"}, method="teacher-forced",
                        margin=0.25, margin_unit="logit", inconclusive_positions=(3,),
                        tolerance=0.001, bitwise={"rows": 1}, fast={"verdict": "match"})


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 2, data[1:]
    if mode == 0:
        job = parse_job(body)
        assert parse_job(job.to_text()) == job, "job does not round-trip"
    else:
        outcome = parse_outcome(body)
        again = parse_outcome(json.dumps(outcome_to_wire(outcome)))
        assert again == outcome, "outcome does not round-trip"


def seeds() -> list[bytes]:
    return [b"\x00" + JOB.to_text().encode(),
            b"\x01" + json.dumps(outcome_to_wire(OUTCOME)).encode(),
            b"\x01" + b'{"verdict": "not-run", "reason": "no worker"}',
            b"\x00" + b'{"v": 1}']


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
