"""Why prefill logits are not bitwise equal to decode logits on this CPU.

    python benchmarks/prefill_decode.py [--json]

Teacher forcing computes many positions per forward pass (matrix products with M rows);
the token loop computes one (M = 1). This probe takes the two kernels a transformer layer
uses apart, on random data at the fixture's and SmolLM2-135M's shapes, torch on one
thread, and reports for each:

- linear layers: for which row counts M a row of `linear(X[:M], W)` is bit for bit the
  same row of `linear(X, W)` (256 rows), whether padding one row with zero rows to 16
  reproduces it, and what the padded product costs against the one-row product;
- attention: whether a query row attended alone over its prefix (decode with a KV cache)
  equals the same row of causal attention over the whole sequence (prefill), for SDPA and
  for eager attention.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

SHAPES = {"fixture (192 -> 512 vocab)": (192, 512), "SmolLM2 q/o (576 -> 576)": (576, 576),
          "SmolLM2 mlp up (576 -> 1536)": (576, 1536), "SmolLM2 mlp down (1536 -> 576)": (1536, 576),
          "SmolLM2 lm_head (576 -> 49152)": (576, 49152)}
ROWS = (1, 2, 8, 15, 16, 17, 64, 255)


def ms(fn: Callable[[], Any], repeats: int = 10) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.perf_counter() - started) / repeats


def linear_probe(k: int, n: int, g: torch.Generator) -> dict[str, Any]:
    w, x = torch.randn(n, k, generator=g), torch.randn(256, k, generator=g)
    full = torch.nn.functional.linear(x, w)
    equal = {m: all(torch.equal(full[i], row) for i, row in
                    enumerate(torch.nn.functional.linear(x[:m], w))) for m in ROWS}
    padded = torch.cat([x[5:6], torch.zeros(15, k)])
    one = x[5:6]
    return {
        "rows_equal_to_prefill_by_M": equal,
        "one_row_padded_to_16_equal": bool(torch.equal(
            torch.nn.functional.linear(padded, w)[0], full[5])),
        "one_row_ms": round(ms(lambda: torch.nn.functional.linear(one, w)), 3),
        "padded_16_ms": round(ms(lambda: torch.nn.functional.linear(padded, w)), 3),
    }


def attention_probe(g: torch.Generator, heads: int = 9, dim: int = 64,
                    length: int = 128) -> dict[str, Any]:
    q, k, v = (torch.randn(1, heads, length, dim, generator=g) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        s = (q @ k.transpose(-1, -2)) / dim ** 0.5
        if causal:
            s = s + torch.full((q.shape[2], k.shape[2]), float("-inf")).triu(1)
        return torch.softmax(s, -1) @ v

    full_sdpa = sdpa(q, k, v, is_causal=True)
    full_eager = eager(q, k, v, True)
    rows_sdpa = sum(bool(torch.equal(sdpa(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1])[
        :, :, 0], full_sdpa[:, :, t])) for t in range(length))
    rows_eager = sum(bool(torch.equal(eager(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1],
                                            False)[:, :, 0], full_eager[:, :, t]))
                     for t in range(length))
    return {"rows": length, "sdpa_rows_equal": rows_sdpa, "eager_rows_equal": rows_eager}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    report: dict[str, Any] = {"torch": torch.__version__, "threads": 1,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "linear": {name: linear_probe(k, n, g) for name, (k, n) in SHAPES.items()},
              "attention": attention_probe(g)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"torch {report['torch']}, {report['cpu_capability']}, 1 thread")
    for name, r in report["linear"].items():
        same = [m for m, ok in r["rows_equal_to_prefill_by_M"].items() if ok]
        print(f"linear {name}: rows bitwise equal to the 256-row product for M in {same}; "
              f"one row padded to 16: {'equal' if r['one_row_padded_to_16_equal'] else 'differs'}"
              f", cost {r['padded_16_ms']} ms against {r['one_row_ms']} ms for one row")
    a = report["attention"]
    print(f"attention, one query over its prefix against causal over {a['rows']} positions: "
          f"SDPA {a['sdpa_rows_equal']}/{a['rows']} rows equal, eager "
          f"{a['eager_rows_equal']}/{a['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
