"""Appraisals with hardware quotes beside the simulated TEE, in one run, on one core.

    python benchmarks/tee.py [--n 600] [--rounds 6] [--json]

Measured, interleaved so that every figure meets the same load:

- `simulated`: in-process appraisals without replay, simulated TEE (the baseline);
- `tdx_test_root`: the same appraisals with a TDX v4 quote of the real layout under the
  TEST ROOT (`tests/tdx_test_root.py`), verified by the real tdx scheme (dcap-qvl, Intel's
  chain replaced by the test root only), collateral from a folder source (cached in
  memory after the first read), each quote binding a fresh nonce;
- `tdx_test_root_no_platform_cache`: the same with dcap-qvl run on every quote (the
  remembered platform verdict, `verifier.tee.tdx_platform`, switched off);
- `tdx_test_root_no_recheck`: the same with the folder source looking at the disk on
  every appraisal (its once-a-second recheck switched off);
- `tdx_quote_collateral`: the same appraisals with the collateral carried in each quote
  object (the attester's `tdx_collateral_url`), parsed once and remembered;
  `tdx_quote_collateral_no_memo`: parsed on every appraisal;
- `tdx_real_quote`: `verifier.tee.tdx.verify_quote_bytes` alone on the real
  `fixtures/tee/intel/tdx_quote` with its collateral parsed once, at the fixture's time
  (the platform verdict remembered after the first); `tdx_real_quote_dcap_qvl`: the
  same with dcap-qvl on every call;
- `snp_real_report`: `verifier.tee.snp.verify_report` alone on the real
  `fixtures/tee/amd/report_milan.hex` with its VCEK, at the fixture's time.

Goal (issue 13): >= 1,000 appraisals/s per core with a TDX quote. Figures are per wall
second and per CPU second of this process (the machine is shared: CPU time is the
figure); ratios are against `simulated`.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the test root builder

from tdx_test_root import TdxTestRoot  # noqa: E402

from attester.engine import Engine, EngineSettings  # noqa: E402
from attester.testing import EvidenceFactory  # noqa: E402
from benchmarks.verifier import interleaved, one_core  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from verifier.config import DEFAULT_MODEL_DIR, TeeTrustConfig, VerifierConfig  # noqa: E402
from verifier.pipeline import Verifier  # noqa: E402
from verifier.tee.base import SchemeTrust  # noqa: E402

INTEL = REPO / "fixtures" / "tee" / "intel"
AMD = REPO / "fixtures" / "tee" / "amd"
TDX_AT = datetime(2025, 6, 19, 10, 32, 28, tzinfo=UTC)
SNP_AT = datetime(2025, 6, 1, tzinfo=UTC)
GOAL_PER_CORE = 1000


class TestRootTdx:
    """The attester's `tsm` quote for a TDX guest, from the TEST ROOT: with no collateral
    carried (the verifier reads its configured collateral folder) or, with `collateral`,
    the collateral carried in the quote object."""

    name = "tsm"
    simulated = False

    def __init__(self, root: TdxTestRoot, *, collateral: bool = False) -> None:
        self.root = root
        self.collateral = collateral

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        quote = self.root.tsm_quote(report_data, collateral=self.collateral)
        quote["software_measurements"] = dict(measurements)
        return quote


JOBS = ("simulated", "tdx_test_root", "tdx_test_root_no_platform_cache", "tdx_test_root_no_recheck",
        "tdx_quote_collateral", "tdx_quote_collateral_no_memo", "tdx_real_quote",
        "tdx_real_quote_dcap_qvl", "snp_real_report")
APPRAISALS = JOBS[:6]


def measure(n: int, rounds: int) -> dict[str, Any]:
    from bytereplay.tdx_collateral import RECHECK_S
    from verifier.tee import snp, tdx, tdx_collateral
    from verifier.tee.tdx_collateral import parse_collateral
    from verifier.tee.tdx_platform import VERDICTS

    def caches(platform: bool = True, recheck: bool = True, memo: bool = True) -> None:
        VERDICTS.enabled = platform
        tdx_collateral.MEMO_ENABLED = memo
        for source in tdx_collateral._SOURCES.values():
            source.recheck_s = RECHECK_S if recheck else 0.0

    with tempfile.TemporaryDirectory(prefix="bytereplay-bench-tee-") as tmp:
        engine = Engine(EngineSettings(model_dir=DEFAULT_MODEL_DIR))  # the fixture
        root = TdxTestRoot()
        files = root.write_files(Path(tmp) / "tdx")
        sim_home, tdx_home = Home.resolve(Path(tmp) / "sim"), Home.resolve(Path(tmp) / "tdx-home")
        sim = Verifier(VerifierConfig(home=sim_home, replay=False))
        hw = Verifier(VerifierConfig(home=tdx_home, replay=False, tee={"tdx": TeeTrustConfig(
            roots=(files["root"],), test_root=True, collateral=str(files["collateral"]))}),
            clock=lambda: root.at.timestamp())
        carried_home = Home.resolve(Path(tmp) / "tdx-carried")
        carried = Verifier(VerifierConfig(home=carried_home, replay=False, tee={
            "tdx": TeeTrustConfig(roots=(files["root"],), test_root=True)}),
            clock=lambda: root.at.timestamp())
        try:
            sim_factory = EvidenceFactory(sim_home, engine)
            tdx_factory = EvidenceFactory(tdx_home, engine)
            provider = TestRootTdx(root)
            sim_ev = [str(sim_factory.make(sim.issue_nonce().nonce)) for _ in range(n)]
            tdx_ev, tdx_ev_2, tdx_ev_3 = ([str(tdx_factory.make(hw.issue_nonce().nonce,
                                                                provider=provider))
                                           for _ in range(n)] for _ in range(3))
            carried_factory = EvidenceFactory(carried_home, engine)
            carrying = TestRootTdx(root, collateral=True)
            carried_ev, carried_ev_2 = ([str(carried_factory.make(
                carried.issue_nonce().nonce, provider=carrying)) for _ in range(n)]
                for _ in range(2))
            warm = hw.appraise(str(tdx_factory.make(hw.issue_nonce().nonce, provider=provider)))
            if warm.status == "contraindicated":
                raise SystemExit(f"the TDX test-root appraisal failed: {warm.token[:80]}")
            quote = (INTEL / "tdx_quote").read_bytes()
            collateral = parse_collateral((INTEL / "tdx_quote_collateral.json").read_bytes())
            tdx_trust = SchemeTrust(configured=True)
            report = (AMD / "report_milan.hex").read_bytes()
            vcek = (AMD / "vcek_milan.der").read_bytes()
            snp_trust = SchemeTrust(configured=True, allowed_tcb=("UpToDate", "MinimumNotConfigured"))
            assert tdx.verify_quote_bytes(quote, tdx_trust, TDX_AT, collateral=collateral).hardware
            assert snp.verify_report(report, snp_trust, SNP_AT, certs=(vcek,)).hardware
            statuses: dict[str, set[str]] = {name: set() for name in APPRAISALS}

            def appraise(name: str, verifier: Verifier, **on: bool) -> Any:
                def one(token: str) -> None:
                    caches(**on)
                    statuses[name].add(verifier.appraise(token, replay=False).status)
                return one

            def real(**on: bool) -> Any:
                def one(_: Any) -> None:
                    caches(**on)
                    tdx.verify_quote_bytes(quote, tdx_trust, TDX_AT, collateral=collateral)
                return one

            gc.collect()
            with one_core() as pinning:
                clocks = interleaved({
                    "simulated": (appraise("simulated", sim), sim_ev),
                    "tdx_test_root": (appraise("tdx_test_root", hw), tdx_ev),
                    "tdx_test_root_no_platform_cache": (appraise(
                        "tdx_test_root_no_platform_cache", hw, platform=False), tdx_ev_2),
                    "tdx_test_root_no_recheck": (appraise(
                        "tdx_test_root_no_recheck", hw, recheck=False), tdx_ev_3),
                    "tdx_quote_collateral": (appraise("tdx_quote_collateral", carried),
                                             carried_ev),
                    "tdx_quote_collateral_no_memo": (appraise(
                        "tdx_quote_collateral_no_memo", carried, memo=False), carried_ev_2),
                    "tdx_real_quote": (real(), list(range(n))),
                    "tdx_real_quote_dcap_qvl": (real(platform=False), list(range(n))),
                    "snp_real_report": (lambda _: snp.verify_report(
                        report, snp_trust, SNP_AT, certs=(vcek,)), list(range(n))),
                }, rounds)
            caches()
        finally:
            sim.close()
            hw.close()
            carried.close()
    base = clocks["simulated"]
    out: dict[str, Any] = {"pinning": pinning, "n": n, "rounds": rounds,
                           "statuses": {k: sorted(v) for k, v in statuses.items()}}
    for name, c in clocks.items():
        out[name] = {"per_s": round(c.per_s(), 1), "per_cpu_s": round(c.per_cpu_s(), 1),
                     "ratio_to_simulated_cpu": round(c.per_cpu_s() / base.per_cpu_s(), 3)}
    out["goal"] = {"tdx_appraisals_per_core_s": GOAL_PER_CORE,
                   "met": clocks["tdx_test_root"].per_cpu_s() >= GOAL_PER_CORE}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600, help="items per measurement")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.n, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"hardware quotes beside the simulated TEE ({report['pinning']}, n={args.n}):")
    for name in JOBS:
        r = report[name]
        print(f"  {name:31s} {r['per_s']:8,.0f}/s  {r['per_cpu_s']:8,.0f} per CPU-s  "
              f"x{r['ratio_to_simulated_cpu']:.3f} of simulated")
    print(f"  statuses: {report['statuses']}")
    g = report["goal"]
    print(f"goal >= {g['tdx_appraisals_per_core_s']:,} TDX appraisals per core-second: "
          f"{'met' if g['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
