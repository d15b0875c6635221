"""Relying-party throughput: decisions per second and evaluate latency (median, p99).

    python benchmarks/relying_party.py [--n 3000] [--policy default] [--json]

A constructed EAR (ES256, simulated TEE, verdict match) and a static JWKS, so no network
is involved. Baselines measured in the same run, on the same token:
  - signature: `KeySet.verify` alone (the JWS check every relying party must pay),
  - read_ear:  signature + `bytereplay.ear.normalise`,
  - rego:      the compiled policy's `decide` alone on a prepared input document, with
               its memo (the steady state: one verifier, one setup) and without it
               (every result structurally new: the worst case).
Target: median evaluate latency <= 1 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named like the package: put the repository first on the path so that
# `import relying_party` finds the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bytereplay.ear import read_ear
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from relying_party import evaluate, load_policy
from relying_party.testing import jwks_of, make_result

TARGET_MEDIAN_MS = 1.0


def measure(fn: Callable[[], Any], n: int, warmup: int = 200) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples: list[int] = []
    start = time.perf_counter_ns()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    total = time.perf_counter_ns() - start
    samples.sort()
    return {
        "n": n,
        "median_ms": statistics.median(samples) / 1e6,
        "p99_ms": samples[min(n - 1, int(n * 0.99))] / 1e6,
        "mean_ms": total / n / 1e6,
        "per_second": n / (total / 1e9),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    key = SigningKey.generate()
    jwks = jwks_of(key)
    keys = KeySet(jwks)
    output = b"The answer is 42.\n" * 8
    nonce = "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9uY2U"
    token = make_result(key, output=output, nonce=nonce, missing=["seed"])
    policy = load_policy(args.policy)

    decision = evaluate(token, output=output, policy=policy, verifier_keys=keys,
                        expected_nonce=nonce)
    assert decision.verdict == "match", decision
    doc = _document(token, output, policy, keys, nonce)

    cold = dataclasses.replace(policy, memoised=False)  # same compiled bundle, no memo
    results = {
        "evaluate": measure(lambda: evaluate(token, output=output, policy=policy,
                                             verifier_keys=keys, expected_nonce=nonce), args.n),
        "evaluate (JWKS dict)": measure(lambda: evaluate(token, output=output, policy=policy,
                                                         verifier_keys=jwks,
                                                         expected_nonce=nonce), args.n),
        "evaluate (memo off)": measure(lambda: evaluate(token, output=output, policy=cold,
                                                        verifier_keys=keys,
                                                        expected_nonce=nonce), args.n),
        "signature": measure(lambda: keys.verify(token, require=("iat",)), args.n),
        "read_ear": measure(lambda: read_ear(token, keys), args.n),
        "rego (memo hit)": measure(lambda: policy.decide(doc), args.n),
        "rego (memo off)": measure(lambda: cold.decide(doc), args.n),
    }
    base = results["signature"]["median_ms"]
    report = {
        "policy": policy.name,
        "allow": decision.allow,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
        "ratio_evaluate_to_signature": results["evaluate"]["median_ms"] / base,
        "ratio_memo_off_to_signature": results["evaluate (memo off)"]["median_ms"] / base,
        "target_median_ms": TARGET_MEDIAN_MS,
        "meets_target": results["evaluate"]["median_ms"] <= TARGET_MEDIAN_MS,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"policy {policy.name}, decision allow={decision.allow}, n={args.n}, "
              f"python {report['python']} on {report['machine']}")
        print(f"{'':22} {'median ms':>10} {'p99 ms':>10} {'per second':>11} {'x signature':>12}")
        for name, r in results.items():
            print(f"{name:22} {r['median_ms']:10.3f} {r['p99_ms']:10.3f} {r['per_second']:11.0f} "
                  f"{r['median_ms'] / base:12.2f}")
        verdict = "meets" if report["meets_target"] else "MISSES"
        print(f"evaluate median {results['evaluate']['median_ms']:.3f} ms {verdict} the "
              f"{TARGET_MEDIAN_MS} ms target")
    return 0 if report["meets_target"] else 1


def _document(token: str, output: bytes, policy: Any, keys: KeySet, nonce: str) -> dict[str, Any]:
    """The policy input evaluate builds, captured once for the rego-only baseline."""
    captured: dict[str, Any] = {}
    original = policy.decide

    def spy(document: dict[str, Any]) -> Any:
        captured.update(document)
        return original(document)

    policy.decide = spy
    try:
        evaluate(token, output=output, policy=policy, verifier_keys=keys, expected_nonce=nonce)
    finally:
        del policy.decide
    return captured


if __name__ == "__main__":
    sys.exit(main())
