"""Attacks through the hardware quote: Evidence whose TDX quote or SEV-SNP report was
truncated, padded past the limit, given another version, bit-flipped, re-bound, or made
debug. Each is signed validly by the attester key (the attacker holds it), so only the
quote can give it away: every case is a negative result (the quote step failed,
contraindicated), never a crash."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from snp_test_root import SnpTestRoot
from tdx_test_root import TdxTestRoot
from verifier_fixtures import evidence_factory, new_home

from bytereplay.ear import flat_submod, peek
from bytereplay.encoding import b64url_decode, b64url_encode
from verifier.config import TeeTrustConfig, VerifierConfig
from verifier.pipeline import Verifier

TDX = TdxTestRoot()
SNP = SnpTestRoot()
AT = TDX.at.timestamp()

Mutation = Callable[[bytes], bytes]


def _flip(offset: int) -> Mutation:
    def go(blob: bytes) -> bytes:
        b = bytearray(blob)
        b[offset] ^= 0x01
        return bytes(b)
    return go


def _version(v: int, fmt: str = "<H") -> Mutation:
    return lambda blob: struct.pack(fmt, v) + blob[struct.calcsize(fmt):]


TDX_CASES: dict[str, Mutation] = {
    "truncated in the header": lambda b: b[:40],
    "truncated in the TD report": lambda b: b[:300],
    "truncated in the signature data": lambda b: b[:-10],
    "oversized": lambda b: b + bytes(70_000),
    "version 3": _version(3),
    "version 6": _version(6),
    "MRTD bit flipped": _flip(48 + 136),
    "RTMR3 bit flipped": _flip(48 + 472),
    "report data bit flipped": _flip(48 + 520),
    "quote signature bit flipped": _flip(48 + 584 + 4 + 10),
    "TEE type SGX": lambda b: b[:4] + struct.pack("<I", 0) + b[8:],
}
SNP_CASES: dict[str, Mutation] = {
    "truncated": lambda b: b[:0x2A0],
    "oversized": lambda b: b + bytes(100),
    "version 1": _version(1, "<I"),
    "version 4": _version(4, "<I"),
    "measurement bit flipped": _flip(0x90),
    "report data bit flipped": _flip(0x50),
    "policy debug bit set": lambda b: b[:8] + struct.pack("<Q", struct.unpack_from(
        "<Q", b, 8)[0] | (1 << 19)) + b[16:],
    "signature bit flipped": _flip(0x2A0 + 5),
}


class Mutating:
    """The tsm provider's quote from a test root, with its blob changed."""

    name = "tsm"
    simulated = False

    def __init__(self, kind: str, mutate: Mutation) -> None:
        self.kind, self.mutate = kind, mutate

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        quote = (TDX.tsm_quote(report_data) if self.kind == "tdx"
                 else SNP.tsm_quote(report_data, version=3))
        quote["outblob"] = b64url_encode(self.mutate(b64url_decode(quote["outblob"])))
        quote["software_measurements"] = dict(measurements)
        return quote


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("attacks-quotes")
    tdx_pem, snp_pem = tmp / "tdx.pem", tmp / "snp.pem"
    tdx_pem.write_text(TDX.root_pem)
    snp_pem.write_text(SNP.pem(SNP.ark))
    home = new_home(tmp)
    v = Verifier(VerifierConfig(home=home, replay=False, tee={
        "tdx": TeeTrustConfig(roots=(tdx_pem,), test_root=True),
        "snp": TeeTrustConfig(roots=(snp_pem,), test_root=True,
                              min_tcb={SNP.product: dict(SNP.tcb)}),
    }), clock=lambda: AT)
    yield home, v
    v.close()


def _appraise(verifier: Any, kind: str, mutate: Mutation) -> dict[str, Any]:
    home, v = verifier
    evidence = evidence_factory(home).make(v.issue_nonce().nonce, provider=Mutating(kind, mutate))
    result = v.appraise(evidence, replay=False)
    return {"status": result.status, **flat_submod(peek(result.token))}


@pytest.mark.parametrize("kind", ["tdx", "snp"])
def test_the_unchanged_quote_verifies(verifier: Any, kind: str) -> None:
    sub = _appraise(verifier, kind, lambda b: b)
    assert sub["bytereplay.checks"]["quote"] == "ok"
    assert sub["ear.trustworthiness-vector"]["hardware"] == 2


@pytest.mark.parametrize(("kind", "case"), [("tdx", c) for c in TDX_CASES]
                         + [("snp", c) for c in SNP_CASES])
def test_a_changed_quote_is_refused(verifier: Any, kind: str, case: str) -> None:
    mutate = (TDX_CASES if kind == "tdx" else SNP_CASES)[case]
    sub = _appraise(verifier, kind, mutate)
    assert sub["status"] == "contraindicated", case
    check = sub["bytereplay.checks"]["quote"]
    assert check.startswith("failed: ") and " raised " not in check, check  # a typed refusal
    assert sub["ear.trustworthiness-vector"]["hardware"] == 99


