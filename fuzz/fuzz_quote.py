"""Fuzz TEE quote verification: `verifier.tee.base.verify_quote` (simulated, tdx, snp, nvidia).

Crash: any exception other than a `BytereplayError`; a simulated quote accepted whose
signed content differs from the genuine one.
"""

from __future__ import annotations

import atexit
import json
import shutil
import struct
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee", "bytereplay"]):
    import kit

    from attester.evidence import expected_report_data
    from bytereplay.encoding import b64url_encode, strict_json_loads
    from bytereplay.home import Home
    from verifier.tee.base import SchemeTrust, verify_quote
    from verifier.tee.simulated import load_ca_pem

HOME = Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-quote-"))
atexit.register(shutil.rmtree, HOME.root, True)
KIT = kit.EvidenceKit(HOME)
NONCE = bytes(range(32))
REPORT_DATA = expected_report_data(NONCE, KIT.record, KIT.key.jwk)
SIM = KIT.claims(NONCE)["bytereplay.quote"]
TRUST = {"simulated": SchemeTrust(configured=True, roots=(str(load_ca_pem(HOME.simulated_ca)),)),
         **{kind: SchemeTrust(configured=True) for kind in ("tdx", "snp", "nvidia")}}
AT = datetime.now(UTC)  # the simulated CA is made now
FIELDS = sorted(SIM)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    if mode == 0:
        verify_quote(strict_json_loads(body), TRUST, REPORT_DATA, AT)
    elif mode == 1:  # one field of a genuine simulated quote replaced
        fdp = atheris.FuzzedDataProvider(body)
        name = FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]
        kind = fdp.ConsumeIntInRange(0, 3)
        value: object = (fdp.ConsumeUnicode(64) if kind == 0 else
                         b64url_encode(fdp.ConsumeBytes(96)) if kind == 1 else
                         fdp.ConsumeInt(4) if kind == 2 else
                         [fdp.ConsumeUnicode(200)])
        quote = {**SIM, name: value}
        verify_quote(quote, TRUST, REPORT_DATA, AT)
        assert name == "signature" or quote == SIM, "simulated quote accepted after a change"
    elif mode == 2:  # a tsm outblob
        tee = "tdx" if body[:1] == b"t" else "sev-snp"
        verify_quote({"provider": "tsm", "simulated": False, "tee": tee,
                      "outblob": b64url_encode(body)}, TRUST, REPORT_DATA, AT)
    else:  # an nvidia attestation report
        verify_quote({"provider": "nvidia", "simulated": False,
                      "attestation_report": b64url_encode(body),
                      "gpu_nonce": b64url_encode(body[:32])}, TRUST, REPORT_DATA, AT)


def seeds() -> list[bytes]:
    snp = bytearray(0x4A0)
    struct.pack_into("<I", snp, 0, 2)
    snp[0x50:0x90] = REPORT_DATA
    tdx = bytearray(48 + 584)
    struct.pack_into("<HH", tdx, 0, 4, 0)
    return [b"\x00" + json.dumps(SIM).encode(), b"\x01" + bytes(16), b"\x02" + bytes(snp),
            b"\x02t" + bytes(tdx), b"\x03" + bytes(range(256))]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
