"""The run record: strict parsing, canonical digest, JSON and CBOR round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bytereplay.encoding import cbor_dumps
from bytereplay.errors import RecordError
from bytereplay.record import RunRecord, leaf_paths

RECORDS = Path(__file__).resolve().parent.parent / "fixtures" / "records"
COMPLETE = RECORDS / "complete.json"
# Pinned: a change here means every stored record digest changes. Update only on purpose.
COMPLETE_DIGEST = "sha-256:9be455fc67f1b5213c7c10146b9a930cbc25aa68fb668609bc5a6712ea18fbe9"


def complete_dict() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(COMPLETE.read_text())
    return value


def test_complete_fixture_digest_is_pinned() -> None:
    assert RunRecord.from_json(COMPLETE.read_bytes()).digest() == COMPLETE_DIGEST


def test_digest_ignores_key_order_and_whitespace() -> None:
    data = complete_dict()
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=7)
    assert RunRecord.from_json(shuffled).digest() == COMPLETE_DIGEST


def test_json_round_trip_gives_equal_record() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    again = RunRecord.from_json(record.to_json())
    assert again == record
    assert again.to_json() == record.to_json()


def test_cbor_round_trip_gives_equal_record() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    cbor = record.to_cbor()
    assert RunRecord.from_cbor(cbor) == record
    assert (RECORDS / "complete.cbor").read_bytes() == cbor


def test_cbor_is_core_deterministic() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    data = record.to_dict()
    assert cbor_dumps(data) == cbor_dumps(dict(reversed(list(data.items()))))


def test_float_fields_accept_integers_and_keep_the_digest() -> None:
    data = complete_dict()
    data["sampling"]["temperature"] = 1
    as_int = RunRecord.from_dict(data)
    data["sampling"]["temperature"] = 1.0
    assert RunRecord.from_dict(data) == as_int
    assert RunRecord.from_dict(data).digest() == as_int.digest()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["model"].update(colour="red"), "model.colour"),
        (lambda d: d.update(threads="1"), "threads"),
        (lambda d: d.update(threads=True), "threads"),
        (lambda d: d["gpu"].update(sm_count=1.5), "gpu.sm_count"),
        (lambda d: d.update(output_hash="sha-256:xyz"), "output_hash"),
        (lambda d: d.update(input_hash="sha-256:" + "A" * 64), "input_hash"),
        (lambda d: d["model"].update(digest="md5:abc"), "model.digest"),
        (lambda d: d["container"].update(digest="sha256:nothex"), "container.digest"),
        (lambda d: d.update(output_token_ids=[1, "2"]), "output_token_ids[1]"),
        (lambda d: d.update(output_token_ids=[1, -2]), "output_token_ids[1]"),
        (lambda d: d["sampling"].update(top_p=0), "sampling.top_p"),
        (lambda d: d["challenge_window"].update(issued_at="yesterday"), "challenge_window.issued_at"),
        (lambda d: d.update(schema="v0"), "schema"),
        (lambda d: d.update(model="x"), "model"),
        (lambda d: d.update(seed=-1), "seed"),
    ],
)
def test_malformed_fields_are_named(mutate: Any, field: str) -> None:
    data = complete_dict()
    mutate(data)
    with pytest.raises(RecordError) as info:
        RunRecord.from_dict(data)
    assert info.value.field == field
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    "raw",
    [b'{"input_hash": ', b"[1, 2]", b"\xff\xfe", b'{"threads": 1, "threads": 2}', b'{"seed": NaN}', b""],
)
def test_malformed_json_is_a_record_error(raw: bytes) -> None:
    with pytest.raises(RecordError):
        RunRecord.from_json(raw)


def test_non_deterministic_cbor_is_refused() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    cbor = bytearray(record.to_cbor())
    with pytest.raises(RecordError):
        RunRecord.from_cbor(bytes(cbor) + b"\x00")  # trailing bytes
    # An indefinite-length map (0xbf ... 0xff) holding the same content.
    with pytest.raises(RecordError):
        RunRecord.from_cbor(b"\xbf" + bytes(cbor[1:]) + b"\xff")


def test_missing_fields_are_allowed_and_left_out() -> None:
    record = RunRecord.from_dict({"seed": 3, "model": {"id": "m"}})
    assert record.to_dict() == {"schema": "deterministic_run_preflight.v1", "seed": 3, "model": {"id": "m"}}
    assert record.get("model.digest") is None
    assert not record.is_present("gpu.arch")


def test_unknown_sentinel_counts_as_missing() -> None:
    record = RunRecord.from_dict({"container": {"digest": "unknown"}})
    assert not record.is_present("container.digest")


def test_replace_sets_and_removes_nested_fields() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    changed = record.replace("gpu.arch", "sm_90")
    assert changed.get("gpu.arch") == "sm_90"
    assert changed.digest() != record.digest()
    assert record.replace("operator", None).get("operator") is None


def test_every_leaf_is_in_the_complete_fixture() -> None:
    record = RunRecord.from_json(COMPLETE.read_bytes())
    assert [p for p in leaf_paths() if not record.is_present(p)] == []


def test_huge_integer_is_an_encoding_error_not_a_value_error() -> None:
    from bytereplay.encoding import strict_json_loads
    from bytereplay.errors import EncodingError

    with pytest.raises(EncodingError, match="malformed JSON"):
        strict_json_loads("1" * 5000)
    with pytest.raises(RecordError):
        RunRecord.from_json('{"seed": ' + "9" * 5000 + "}")
