"""preflight(record): every item holds on the complete record; removing one field shows exactly it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bytereplay.checklist import ENVIRONMENT_FIELDS, ITEM_BY_FIELD, ITEMS, Group
from bytereplay.preflight import preflight
from bytereplay.record import RunRecord, leaf_paths

REPO = Path(__file__).resolve().parent.parent
COMPLETE = REPO / "fixtures" / "records" / "complete.json"


def complete() -> RunRecord:
    return RunRecord.from_json(COMPLETE.read_bytes())


def test_checklist_names_every_record_leaf_exactly_once() -> None:
    assert [i.field for i in ITEMS] == list(leaf_paths())


def test_complete_record_holds_everything() -> None:
    report = preflight(complete())
    assert report.complete
    assert report.missing == []
    assert all(r.status == "holds" for r in report.results if r.item.group != Group.BEFORE_ACTION)


def test_before_action_is_deferred_until_a_policy_is_named() -> None:
    assert preflight(complete()).group(Group.BEFORE_ACTION)[0].status == "deferred"
    assert preflight(complete(), policy="strict").group(Group.BEFORE_ACTION)[0].status == "holds"


@pytest.mark.parametrize("field", list(leaf_paths()))
def test_removing_one_field_shows_exactly_that_item(field: str) -> None:
    report = preflight(complete().replace(field, None))
    assert report.missing == [field]
    assert report.shrinks() == [ITEM_BY_FIELD[field].shrink]


def test_environment_fields_are_checklist_items() -> None:
    assert set(ENVIRONMENT_FIELDS) <= set(ITEM_BY_FIELD)
    assert "gpu.arch" in ENVIRONMENT_FIELDS and "seed" not in ENVIRONMENT_FIELDS


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bytereplay.cli", *args],
        capture_output=True, text=True, cwd=REPO, input=stdin.decode() if stdin else None, check=False,
    )


def test_cli_checklist_for_complete_record() -> None:
    out = _cli("preflight", str(COMPLETE), "--strict")
    assert out.returncode == 0, out.stderr
    assert "[ ]" not in out.stdout
    assert out.stdout.count("[x]") == len(ITEMS)


def test_cli_one_field_removed(tmp_path: Path) -> None:
    data = json.loads(COMPLETE.read_text())
    del data["gpu"]["driver"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    out = _cli("preflight", str(path))
    assert out.returncode == 0
    missing_lines = [line for line in out.stdout.splitlines() if "[ ]" in line]
    assert len(missing_lines) == 1 and "gpu.driver" in missing_lines[0]
    assert ITEM_BY_FIELD["gpu.driver"].shrink in missing_lines[0]
    assert _cli("preflight", str(path), "--strict").returncode == 1
    js = _cli("preflight", str(path), "--json")
    assert json.loads(js.stdout)["missing"] == ["gpu.driver"]


def test_cli_reads_cbor_and_stdin() -> None:
    out = _cli("preflight", str(COMPLETE.with_suffix(".cbor")), "--json")
    assert json.loads(out.stdout)["complete"] is True
    out = _cli("preflight", "-", "--json", stdin=COMPLETE.read_bytes())
    assert json.loads(out.stdout)["missing"] == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"seed": ', "malformed JSON"),
        ('{"seed": "7"}', "seed: expected an integer"),
        ('{"seed": 7, "colour": 1}', "colour: unknown field"),
        ('{"output_hash": "sha-256:zz"}', "output_hash: expected 'sha-256:'"),
    ],
)
def test_cli_malformed_record_is_one_line_exit_2(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = _cli("preflight", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert fragment in out.stderr


def test_cli_missing_file_is_exit_2() -> None:
    out = _cli("preflight", "/nonexistent/record.json")
    assert out.returncode == 2 and "cannot read" in out.stderr


def _summary_counts(summary: dict[str, object]) -> dict[str, int]:
    groups = summary["groups"]
    assert isinstance(groups, dict)
    return {g: v["holds"] + len(v["missing"]) + len(v["deferred"]) for g, v in groups.items()}


def test_summary_of_a_complete_record() -> None:
    summary = preflight(complete()).summary()
    assert summary["checklist"] == "deterministic_run_preflight.v1"
    assert summary["complete"] is True and summary["missing"] == []
    groups = summary["groups"]
    assert groups["before replay"] == {
        "holds": sum(1 for i in ITEMS if i.group == Group.BEFORE_REPLAY),
        "missing": [], "deferred": []}
    assert groups["before action"] == {"holds": 0, "missing": [],
                                       "deferred": ["relying_party_policy"]}
    assert sum(_summary_counts(summary).values()) == len(ITEMS) + 1


@pytest.mark.parametrize("field", ["toolkit.cudnn", "seed", "operator", "challenge_window.expires_at"])
def test_summary_names_the_missing_field_in_its_group(field: str) -> None:
    report = preflight(complete().replace(field, None), policy="strict")
    summary = report.summary()
    group = ITEM_BY_FIELD[field].group.value
    assert summary["complete"] is False and summary["missing"] == [field] == report.missing
    assert summary["groups"][group]["missing"] == [field]
    assert summary["groups"]["before action"] == {"holds": 1, "missing": [], "deferred": []}
    # The summary is what the EAR carries: small, and plain JSON.
    assert json.loads(json.dumps(summary)) == summary
    assert len(json.dumps(summary)) < len(json.dumps(report.to_dict())) / 5


def test_present_agrees_with_is_present() -> None:
    paths = tuple(leaf_paths())
    records = [complete(), RunRecord(), complete().replace("gpu", None),
               complete().replace("container.digest", "unknown"),
               complete().replace("output_token_ids", ())]
    for record in records:
        assert record.present(paths) == [record.is_present(p) for p in paths]
    with pytest.raises(AttributeError):
        complete().present(("gpu.no_such_field",))
