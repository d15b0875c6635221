"""Fuzz AMD's CRL check for SEV-SNP (`tee.snp.crl`: `snp_certs.amd_crl`, `snp._check_revocation`).

Under an SNP test root (`tests/snp_test_root.py`), the revocation step of a report's
verification (its chain endorsed once, outside the loop) runs with `tee.snp.crl` naming
a file that holds: the fuzz input itself (mode 0), or the test ARK's genuine CRL, which
lists no certificate of the chain, with fuzzed bytes XORed in at an offset (mode 1).

Crash: any exception other than a `BytereplayError`; a CRL accepted ("checked") whose
signed part differs from the genuine one's (only the ARK can sign a CRL).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee"]):
    from cryptography import x509
    from snp_test_root import SnpTestRoot

    from verifier.tee import snp, snp_certs

ROOT = SnpTestRoot()
AT = datetime(2025, 6, 1, tzinfo=UTC)
CRL = ROOT.crl()
GENUINE_TBS = x509.load_der_x509_crl(CRL).tbs_certlist_bytes
REPORT = ROOT.report(bytes(64))
FOLDER = Path(tempfile.mkdtemp(prefix="fuzz-snp-crl-"))
PATH = FOLDER / "Milan.crl"
TRUST = ROOT.trust(crl=str(PATH))
ENDORSED = snp._check_endorsement(snp.parse_report(REPORT), ROOT.vcek, [ROOT.ask],
                                  snp.anchors_for(TRUST), AT)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 2, data[1:]
    if mode == 0:
        crl = body
    else:
        fdp = atheris.FuzzedDataProvider(body)
        at = fdp.ConsumeIntInRange(0, len(CRL) - 1)
        raw = bytearray(CRL)
        for i, b in enumerate(fdp.ConsumeBytes(16)[: len(CRL) - at]):
            raw[at + i] ^= b
        crl = bytes(raw)
    PATH.write_bytes(crl)
    snp_certs._CRLS.clear()
    revocation, _ = snp._check_revocation(ENDORSED, "VCEK", TRUST, AT)
    assert revocation == "checked", "a CRL was neither checked nor refused"
    assert snp_certs.load_crl(crl, "fuzz").tbs_certlist_bytes == GENUINE_TBS, \
        "a changed CRL accepted"


def seeds() -> list[bytes]:
    return [b"\x00" + CRL, b"\x00" + b"-----BEGIN X509 CRL-----\n", b"\x01" + bytes(20),
            b"\x01\x10" + b"\xff" * 16]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
