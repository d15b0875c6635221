"""The cost of Veraison's session API against bytereplay's own endpoints.

    python benchmarks/veraison.py [--n 300] [--store sqlite|redis --redis-url URL] [--json]

On one verifier app in process (FastAPI TestClient, replay off, the fixture model's
Evidence and the simulated TEE), alternating the two paths so both see the same
machine state:

- baseline: `POST /v1/challenge`, then `POST /v1/verify` with the Evidence;
- session:  `POST /challenge-response/v1/newSession`, then `POST .../session/{id}` (the
  session kept in the store, claimed atomically, the answer written back).

Prints the median time per round trip pair of each and their ratio (session/baseline):
what the session bookkeeping costs on top of an appraisal. Evidence is made beforehand
and not timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from attester.engine import Engine, EngineSettings  # noqa: E402
from attester.testing import EvidenceFactory  # noqa: E402
from bytereplay.encoding import b64url_decode  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from verifier.config import VerifierConfig  # noqa: E402
from verifier.service import create_app  # noqa: E402

JWT = "application/eat+jwt"
SESSION_MT = "application/vnd.veraison.challenge-response-session+json"
NEW = "/challenge-response/v1/newSession"


def measure(n: int, store: str, redis_url: str | None) -> dict[str, Any]:
    home = Home.resolve(tempfile.mkdtemp(prefix="br-bench-veraison-"))
    factory = EvidenceFactory(home, Engine(EngineSettings()))
    extra: dict[str, Any] = {"store": store}
    if redis_url:
        extra |= {"redis_url": redis_url, "redis_prefix": f"bench{time.time_ns()}:"}
    config = VerifierConfig(home=home, replay=False, **extra)
    base: list[float] = []
    sess: list[float] = []
    with TestClient(create_app(config)) as client:
        factory.make(b"\0" * 32)  # the run, computed once
        for i in range(n + 10):  # the first 10 of each warm up
            t = time.perf_counter()
            r = client.post("/v1/challenge")
            t_open = time.perf_counter()
            made = factory.make(b64url_decode(r.json()["nonce"]))
            t_made = time.perf_counter()
            r = client.post("/v1/verify", content=made, headers={"content-type": JWT})
            t_end = time.perf_counter()
            assert r.status_code == 200 and r.json()["status"] == "warning", r.text
            if i >= 10:
                base.append((t_open - t) + (t_end - t_made))

            t = time.perf_counter()
            r = client.post(NEW, headers={"accept": SESSION_MT})
            t_open = time.perf_counter()
            url = NEW.rsplit("/", 1)[0] + "/" + r.headers["location"]
            made = factory.make(b64url_decode(r.json()["nonce"]))
            t_made = time.perf_counter()
            r = client.post(url, content=made, headers={"content-type": JWT,
                                                        "accept": SESSION_MT})
            t_end = time.perf_counter()
            assert r.status_code == 200 and r.json()["status"] == "complete", r.text
            if i >= 10:
                sess.append((t_open - t) + (t_end - t_made))
    b, s = statistics.median(base), statistics.median(sess)
    return {"n": n, "store": store, "baseline_ms": round(b * 1e3, 3),
            "session_ms": round(s * 1e3, 3), "ratio": round(s / b, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.store == "redis" and not args.redis_url:
        p.error("--store redis needs --redis-url")
    out = measure(args.n, args.store, args.redis_url)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"store {out['store']}, n={out['n']}, replay off, TestClient in process")
        print(f"  /v1/challenge + /v1/verify:           {out['baseline_ms']:.3f} ms (median)")
        print(f"  newSession + POST session/{{id}}:       {out['session_ms']:.3f} ms (median)")
        print(f"  ratio session / baseline:             {out['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
