"""The appraisal pipeline: Evidence in, a signed attestation result (EAR) out.

Steps, declared once in `STEPS` (each owns its name, its fact defaults and its
function; failures are facts, not exceptions). Adding a step means adding one entry
there and its rule in the Rego policy:

    decode        parse the Evidence (JWT or COSE_Sign1 CWT, size-limited) and check that
                  its claims agree (record digest, output hash, measurements, request)
    signature     the EAT signature verifies with the key in `cnf.jwk` (checked by decode)
    quote         the TEE scheme the quote declares verifies it under that scheme's trust
                  (`verifier.tee`), at the verifier clock's time, and its report data is
                  SHA-512(nonce || record digest || key thumbprint), recomputed here
    measurements  the quote's signed measurement registers equal the Evidence's
    devices       composite evidence: each GPU's evidence under its derived SPDM nonce
                  (`verifier.devices`), and the run record's GPU (SKU, driver) against
                  every accepted GPU evidence
    nonce         consumed atomically (only once the Evidence is bound to a TEE: forged
                  Evidence cannot burn someone else's nonce)
    reference     model / container / runtime against the configured reference values
    preflight     completeness of the run record (`bytereplay.preflight`)
    external      attestation-service tokens, when any are attached
    replay        re-run and compare (`verifier.replay`), in this process's worker pool or,
                  with `replay_backend: "celery"`, on a worker of the fleet holding the
                  model (`verifier.fleet`); skipped after any failure above
    policy        the Rego appraisal policy turns the facts into the AR4SI vector

Bad Evidence always yields a negative EAR. Only transport problems raise (the sidecar
answers them with problem+json): oversized Evidence (`TooLargeError`) and a store that
cannot be reached (`StoreUnavailable`, 503).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from bytereplay import ear, eat
from bytereplay.ar4si import CLAIMS, VERIFIER_MALFUNCTION
from bytereplay.checklist import Group
from bytereplay.claims import MATCH, MATCH_PORTABLE, NOT_RUN
from bytereplay.encoding import b64url_decode
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    PolicyError,
    QueueFull,
    SignatureError,
    StoreUnavailable,
    TooLargeError,
    UsageError,
)
from bytereplay.evidence import DecodedEvidence, decode_evidence, detect_format
from bytereplay.keyring import KeyRing
from bytereplay.keys import SigningKey
from bytereplay.preflight import PreflightReport, preflight
from verifier import reference as reference_values
from verifier.appraisal_policy import AppraisalPolicy
from verifier.config import VerifierConfig
from verifier.devices import OK as DEVICE_OK
from verifier.devices import Device, device_facts, device_tee, record_differences, verify_gpus
from verifier.external import ExternalVerifier
from verifier.metrics import Metrics
from verifier.nonces import UNKNOWN as UNKNOWN_NONCE
from verifier.nonces import (
    IssuedNonce,
    NonceRefused,
    Store,
    compare_window,
    new_result_id,
    open_store,
)
from verifier.provisioning import ProvisionedStore, Provisioner
from verifier.replay import (
    DIGEST_CACHE_FILE,
    EngineFactory,
    Replayer,
    ReplayOutcome,
    ReplaySettings,
    not_run,
)
from verifier.replay import (
    METHODS as REPLAY_METHODS,
)
from verifier.results import Result, extensions, issue
from verifier.tee.base import QuoteVerification, SchemeTrust, known_kinds, verify_quote
from verifier.trust import home_ca_appeared, load_trust_sources, scheme_trusts

if TYPE_CHECKING:
    from verifier.fleet import FleetClient

log = logging.getLogger("bytereplay.verifier")

OK = "ok"
NOT_RUN_TEXT = "not run: an earlier check failed"


@dataclass(slots=True)
class Inputs:
    """What one appraisal is given (not changed once made)."""

    data: bytes | str = b""
    fmt: str | None = None
    replay: bool = True
    external_tokens: list[Any] | None = None
    replay_method: str | None = None  # None: the configured one
    profile: str | None = None  # the EAR profile; None: the configured one
    session_nonce: bytes | None = None  # a session's nonce: the Evidence must carry it


@dataclass
class Appraisal:
    """One appraisal in progress: the facts gathered so far. `id` names it (the async
    result id; on the replay fleet, the job and its first-stored outcome)."""

    id: str = field(default_factory=new_result_id)
    started: float = field(default_factory=time.perf_counter)
    checks: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=lambda: new_facts())
    decoded: DecodedEvidence | None = None
    quote: QuoteVerification | None = None
    report: PreflightReport | None = None
    preflight: dict[str, Any] | None = None  # the report's summary, as the EAR carries it
    replay: ReplayOutcome | None = None
    replay_skip: str | None = None
    inputs: Inputs = field(default_factory=Inputs)
    devices: list[Device] = field(default_factory=list)  # composite evidence's GPUs

    @property
    def evidence(self) -> dict[str, str]:
        value: dict[str, str] = self.facts["evidence"]
        return value

    @property
    def bound(self) -> bool:
        """Decoded, signed, and the quote binds it: later steps may trust its content."""
        ev = self.evidence
        return all(ev[k] == OK for k in ("decode", "signature", "quote"))

    @property
    def failed(self) -> bool:
        """Any check whose failure makes replay pointless."""
        return not self.bound or self.evidence["measurements"] == "differs" or \
            self.facts["nonce"] not in (OK, "not-checked")

    @property
    def nonce_text(self) -> str | None:
        if self.decoded is None:
            return None
        value = self.decoded.claims.get("eat_nonce")
        return value if isinstance(value, str) else None


# -- the steps ------------------------------------------------------------------------


def unexpected(exc: Exception, where: str) -> str:
    """The failure text for `exc`. Anything but our own errors is a bug below us reached by
    outside input: logged with its traceback, and still only a failed check (never a 5xx)."""
    if isinstance(exc, BytereplayError):
        return exc.detail
    log.error("%s raised %s on outside input (a bug to fix there)", where,
              type(exc).__name__, exc_info=exc)
    return f"malformed input ({where} raised {type(exc).__name__})"


def evidence_bytes(data: bytes | str, fmt: str | None) -> bytes:
    """The Evidence as submitted, for `ear_raw_evidence`: a JWT's text, a CWT's bytes (a CWT
    sent as base64url text in a JSON envelope is decoded; text that is not base64url is
    kept as its UTF-8 bytes)."""
    if isinstance(data, bytes):
        return data
    text = data.strip()
    if (fmt or detect_format(text)) == "cwt":
        try:
            return b64url_decode(text)
        except EncodingError:
            pass
    return text.encode("utf-8")


def step_decode(a: Appraisal, data: bytes | str, fmt: str | None, max_bytes: int) -> None:
    ev = a.evidence
    try:
        a.decoded = decode_evidence(data, fmt, max_bytes=max_bytes)
    except TooLargeError:
        raise
    except SignatureError as exc:
        ev["decode"], ev["signature"] = OK, "failed"
        a.checks["decode"], a.checks["signature"] = OK, f"failed: {exc.detail}"
        return
    except Exception as exc:  # BytereplayError, or a decoder bug on hostile input
        ev["decode"] = "failed"
        a.checks["decode"] = f"failed: {unexpected(exc, 'the Evidence decoder')}"
        a.checks["signature"] = NOT_RUN_TEXT
        return
    ev["decode"] = ev["signature"] = OK
    a.checks["decode"] = a.checks["signature"] = OK


def step_quote(a: Appraisal, trusts: Mapping[str, SchemeTrust], at: datetime) -> None:
    if a.decoded is None:
        a.checks["quote"] = NOT_RUN_TEXT
        return
    ev = a.evidence
    d = a.decoded
    # = d.expected_report_data without hashing the record a second time: decode_evidence
    # has refused Evidence whose record digest claim is not the record's digest.
    expected = eat.report_data(d.nonce, d.record_digest, d.key_thumbprint_bytes)
    try:
        a.quote = verify_quote(d.quote, trusts, expected, at)
    except Exception as exc:  # QuoteError, or a verifier bug on hostile input
        ev["quote"] = "failed"
        a.checks["quote"] = f"failed: {unexpected(exc, 'the quote verifier')}"
        return
    ev["quote"] = OK
    a.checks["quote"] = OK
    a.facts["tee"] = tee_facts(a.quote, trusts)


def tee_facts(q: QuoteVerification, trusts: Mapping[str, SchemeTrust]) -> dict[str, Any]:
    """What the appraisal policy reads of an accepted quote, and the EAR's `bytereplay.tee`:
    the scheme, whether hardware was verified, the TCB status and advisories, the
    collateral's times and the root that decided (a test root is named and flagged), plus
    what the scheme adds (`QuoteVerification.ear_facts`)."""
    trust = trusts.get(q.scheme)
    facts = {"provider": q.provider, "scheme": q.scheme, "simulated": bool(q.simulated),
             "hardware": bool(q.hardware), "chain_ok": bool(q.chain_ok),
             "tcb_status": q.tcb_status, "tcb_up_to_date": q.tcb_up_to_date,
             "advisories": list(q.advisories), "collateral": dict(q.collateral),
             "root": q.root, "test_root": bool(trust is not None and trust.test_root)}
    # A scheme's own facts (nvidia: `gpu`) never replace the common ones.
    return {**q.ear_facts, **facts}


def measurement_differences(quote: QuoteVerification, decoded: DecodedEvidence) -> list[str]:
    """The registers where the quote and the Evidence's measurements disagree: those the
    TEE signed (simulated) or, for the others, those the quote declares
    (`software_measurements`, bound through the record digest); none when it declares
    none."""
    signed = quote.measurements if quote.simulated else decoded.quote.get("software_measurements")
    mine = decoded.measurements
    if signed is None or signed == mine:
        return []
    if not isinstance(signed, dict):
        return ["software_measurements"]
    return sorted(k for k in set(signed) | set(mine) if signed.get(k) != mine.get(k))


def step_measurements(a: Appraisal) -> None:
    if a.quote is None or a.decoded is None:
        return  # the quote step said why
    differing = measurement_differences(a.quote, a.decoded)
    if differing:
        a.evidence["measurements"] = "differs"
        a.checks["measurements"] = ("differs: the quote's registers disagree with the run "
                                    f"record at {', '.join(differing)}")
    else:
        a.evidence["measurements"] = OK
        a.checks["measurements"] = OK


def step_devices(a: Appraisal, trusts: Mapping[str, SchemeTrust], at: datetime) -> None:
    """Composite evidence's GPUs, and the record's GPU against every accepted GPU evidence."""
    d, q = a.decoded, a.quote
    if d is None or q is None or not a.bound:
        return
    if d.gpu_evidence:
        a.devices = verify_gpus(d.gpu_evidence, d.nonce, d.record_digest, trusts, at)
        a.facts["devices"] = device_facts(a.facts["tee"], a.evidence["quote"], a.devices)
        bad = [f"{dev.name}: {dev.status}: {dev.detail}" for dev in a.devices
               if dev.status != DEVICE_OK]
        a.checks["devices"] = "; ".join(bad) if bad else OK
    evidence = [(dev.gpu_name, dev.facts) for dev in a.devices if dev.status == DEVICE_OK]
    gpu = q.ear_facts.get("gpu")
    if isinstance(gpu, dict):  # a lone GPU quote
        name = d.quote.get("gpu")
        evidence.insert(0, (name if isinstance(name, str) else None, gpu))
    if not evidence:
        return
    compared, differences = record_differences(d.record.gpu, evidence)
    if differences:
        a.facts["gpu_record"] = "differs"
        a.checks["gpu_record"] = "differs: " + "; ".join(differences)
    elif compared:  # nothing to compare (a CPU run's record) leaves "not-compared"
        a.facts["gpu_record"] = a.checks["gpu_record"] = OK


def step_nonce(a: Appraisal, store: Store, mode: str, metrics: Metrics,
               session_nonce: bytes | None = None) -> None:
    if not a.bound or a.decoded is None:
        a.checks["nonce"] = "not run: the Evidence is not bound to a TEE, so its nonce is left alone"
        return
    nonce: bytes = a.decoded.nonce
    if session_nonce is not None and nonce != session_nonce:
        # Another nonce (perhaps fresh, issued for someone else) is left alone.
        a.facts["nonce"] = UNKNOWN_NONCE
        a.checks["nonce"] = "refused: the Evidence's nonce is not this session's nonce"
        metrics.child(metrics.nonce_refusals, UNKNOWN_NONCE).inc()
        return
    try:
        if mode == "store-if-known" and store.peek(nonce) is None:
            a.facts["nonce"] = "not-checked"
            a.checks["nonce"] = ("not checked: this verifier's store did not issue the nonce, "
                                 "so freshness is not shown")
            return
        issued = store.consume(nonce)
    except NonceRefused as exc:
        a.facts["nonce"] = exc.reason
        a.checks["nonce"] = f"refused: {exc.detail}"
        metrics.child(metrics.nonce_refusals, exc.reason).inc()
        return
    except BytereplayError:
        raise
    except Exception as exc:  # the store (SQLite, Redis) failed: not the Evidence's fault
        raise StoreUnavailable(f"the nonce store failed: {exc}") from None
    a.facts["nonce"] = OK
    a.checks["nonce"] = OK
    a.facts["challenge_window"], a.checks["challenge_window"] = compare_window(
        a.decoded.record.challenge_window, issued)


def step_reference(a: Appraisal, refs: reference_values.ReferenceValues) -> None:
    if a.decoded is None:
        a.checks["reference"] = NOT_RUN_TEXT
        return
    if not refs.configured:
        a.checks["reference"] = "not configured"
        return
    status = refs.compare(a.decoded.record)
    a.facts["reference"] = status
    bad = [f"{k}: {v}" for k, v in status.items()
           if v not in (reference_values.MATCHED, reference_values.NOT_CONFIGURED)]
    a.checks["reference"] = OK if not bad else "; ".join(bad)


def step_preflight(a: Appraisal) -> None:
    if a.decoded is None:
        a.checks["preflight"] = NOT_RUN_TEXT
        return
    a.report = preflight(a.decoded.record)
    summary = a.preflight = a.report.summary()
    missing, complete = summary["missing"], summary["complete"]
    a.facts["preflight"] = {
        "complete": complete, "missing": missing,
        "missing_before_replay": summary["groups"][Group.BEFORE_REPLAY]["missing"]}
    a.checks["preflight"] = OK if complete else \
        f"incomplete: {len(missing)} item(s) missing ({', '.join(missing)})"


def step_external(a: Appraisal, external: ExternalVerifier, attached: list[Any] | None,
                  at: datetime) -> None:
    tokens: list[Any] = list(attached or [])
    d = a.decoded
    if d is not None and eat.EXTERNAL_TOKENS in d.claims:
        claimed = d.claims[eat.EXTERNAL_TOKENS]
        tokens.extend(claimed if isinstance(claimed, list) else [claimed])
    if not tokens:
        return
    # NRAS answers and ITA tokens are bound to this Evidence through its report data.
    expected = (eat.report_data(d.nonce, d.record_digest, d.key_thumbprint_bytes)
                if d is not None else None)
    facts, texts = external.appraise(tokens, report_data=expected, now=at.timestamp())
    a.facts["external"] = facts
    a.checks["external"] = "; ".join(f"{k}: {v}" for k, v in texts.items())


def check_replay_method(method: str | None) -> None:
    """None (the configured method) or one of `verifier.replay.METHODS`; else UsageError."""
    if method is not None and method not in REPLAY_METHODS:
        raise UsageError(f"replay_method must be one of {', '.join(REPLAY_METHODS)}")


ReplayRun = Callable[[Appraisal], ReplayOutcome]


def step_replay(a: Appraisal, run: ReplayRun | None) -> None:
    if a.replay_skip is not None or run is None or a.decoded is None:
        reason = a.replay_skip or "replay is disabled in the verifier's configuration"
        a.replay = not_run(reason)
    else:
        a.replay = run(a)
    outcome = a.replay
    a.facts["replay"] = {"verdict": outcome.verdict, "method": outcome.method,
                         "bitwise": outcome.bitwise_equal}
    a.facts["request"] = outcome.facts.get("request", "not-run")
    if outcome.verdict in (MATCH, MATCH_PORTABLE):
        a.checks["replay"] = OK
    elif outcome.verdict == NOT_RUN:
        a.checks["replay"] = f"not run: {outcome.reason}"
    else:
        a.checks["replay"] = f"{outcome.verdict}: {outcome.reason}"


def _decoded(a: Appraisal) -> DecodedEvidence:
    assert a.decoded is not None  # step_replay runs a replay only on decoded Evidence
    return a.decoded


# -- the verifier ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step: its name, the facts it owns with their values before it runs (merged
    into `Appraisal.facts`; `evidence` members merge into that object), whether a
    failed check of it skips the replay (`gates`: its check names), and its function."""

    name: str
    facts: Callable[[], dict[str, Any]]
    run: Callable[[Verifier, Appraisal, Inputs], None]
    gates: tuple[str, ...] = ()


def _nonce(v: Verifier, a: Appraisal, i: Inputs) -> None:
    step_nonce(a, v.store, v.config.nonce_mode, v.metrics, i.session_nonce)


STEPS: tuple[Step, ...] = (
    Step("decode", lambda: {"evidence": {"decode": "not-run", "signature": "not-run"}},
         lambda v, a, i: step_decode(a, i.data, i.fmt, v.config.max_evidence_bytes),
         gates=("decode", "signature")),
    Step("quote", lambda: {"evidence": {"quote": "not-run"}, "tee": None},
         lambda v, a, i: step_quote(a, v.trust(), v.now()), gates=("quote",)),
    Step("measurements", lambda: {"evidence": {"measurements": "not-run"}},
         lambda v, a, i: step_measurements(a), gates=("measurements",)),
    Step("devices", lambda: {"devices": {}, "gpu_record": "not-compared"},
         lambda v, a, i: step_devices(a, v.trust(), v.now())),
    Step("nonce", lambda: {"nonce": "not-run", "challenge_window": "not-run"}, _nonce,
         gates=("nonce",)),
    Step("reference", lambda: {"reference": {item: reference_values.NOT_CONFIGURED
                                             for item in reference_values.ITEMS}},
         lambda v, a, i: step_reference(a, v.references)),
    Step("preflight", lambda: {"preflight": {"complete": False, "missing": [],
                                             "missing_before_replay": []}},
         lambda v, a, i: step_preflight(a)),
    Step("external", lambda: {"external": {}},
         lambda v, a, i: step_external(a, v.external, i.external_tokens, v.now())),
    # Runs in `finish` (on a replay worker when asynchronous), after the steps above.
    Step("replay", lambda: {"request": "not-run",
                            "replay": {"verdict": NOT_RUN, "method": None, "bitwise": None}},
         lambda v, a, i: step_replay(a, v.replay_run)),
)
BEFORE_REPLAY = tuple(s for s in STEPS if s.name != "replay")
REPLAY = next(s for s in STEPS if s.name == "replay")
GATES = tuple(name for s in STEPS for name in s.gates)


def default_facts() -> dict[str, Any]:
    """Every step's facts before it runs."""
    facts: dict[str, Any] = {"evidence": {}}
    for step in STEPS:
        for key, value in step.facts().items():
            if key == "evidence":
                facts["evidence"].update(value)
            else:
                facts[key] = value
    return facts


_FACTS_JSON = orjson.dumps(default_facts())


def new_facts() -> dict[str, Any]:
    """A fresh copy of `default_facts()`: read back from its JSON, made once (half the
    cost of merging the steps' defaults on every appraisal)."""
    facts: dict[str, Any] = orjson.loads(_FACTS_JSON)
    return facts


class Verifier:
    """The in-process verifier. Thread-safe; `close()` when done."""

    def __init__(self, config: VerifierConfig, *, store: Store | None = None,
                 metrics: Metrics | None = None,
                 engine_factory: EngineFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config: VerifierConfig = config
        self.clock = clock
        self.metrics = metrics or Metrics()
        # One ring for every process and replica reading the same files: a rotation is
        # picked up within a second, without a restart.
        self.keys = KeyRing(config.ear_key_path, alg=config.key_alg,
                            create=config.ear_key is None, clock=clock)
        self.policy = AppraisalPolicy(config.policy, cache=config.policy_cache)
        self.file_references = reference_values.load(config.reference_values)
        self.provisioning = Provisioner(config.provisioning_token_file, config.provisioning_keys,
                                        ProvisionedStore(config.home.provisioned_values))
        self._refs_seen: tuple[reference_values.ReferenceValues,
                               reference_values.ReferenceValues] | None = None
        self.external: ExternalVerifier = ExternalVerifier(config.external)
        self._trust_lock = threading.Lock()
        self.trust_sources = load_trust_sources(config)
        self._trusts = scheme_trusts(config, self.trust_sources)
        self.replayer: Replayer | None = None
        self.fleet: FleetClient | None = None
        if config.replay and config.replay_backend == "celery":
            from verifier.fleet import FleetClient

            self.fleet = FleetClient(config, self.metrics)
        elif config.replay:
            self.replayer = Replayer(ReplaySettings.from_config(config),
                                     cache_file=config.home.root / DIGEST_CACHE_FILE,
                                     engine_factory=engine_factory)
        self.store: Store = store or open_store(
            config.store, path=config.store_path, redis_url=config.redis_url,
            redis_prefix=config.redis_prefix, ttl=config.nonce_ttl_s,
            result_ttl=config.result_ttl_s, clock=clock)
        # On the fleet a pool thread only waits for its job's outcome: one per queued job.
        self._pool = ThreadPoolExecutor(max_workers=config.replay_queue if self.fleet
                                        else config.replay_workers,
                                        thread_name_prefix="bytereplay-replay")
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        for line in self.trust_lines():
            log.info("%s", line)

    # -- trust anchors ----------------------------------------------------------------

    def now(self) -> datetime:
        """The verification time: the verifier clock's now."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def trust(self) -> Mapping[str, SchemeTrust]:
        """Each configured scheme's trust. The home's simulated CA is picked up when it
        appears after start (an attester sharing the home creates it on its first start)."""
        if home_ca_appeared(self.config, self.trust_sources):
            with self._trust_lock:
                self.trust_sources = load_trust_sources(self.config)
                self._trusts = scheme_trusts(self.config, self.trust_sources)
            for line in self.trust_lines():
                log.info("%s", line)
        return self._trusts

    def trust_lines(self) -> list[str]:
        origin = {"home": "found in the home", "config": "configured"}
        lines = [f"trusting simulated platform CA {s.path} ({origin[s.origin]}); "
                 "simulated quotes are never rated better than warning"
                 for s in self.trust_sources]
        if not self.trust_sources:
            where = self.config.home.simulated_ca
            lines.append("no simulated platform CA trusted" + (
                f" yet: the one created in {where} will be trusted when it appears"
                if self.config.trust_home_ca else ""))
        return lines

    # -- nonces -----------------------------------------------------------------------

    def issue_nonce(self, size: int | None = None) -> IssuedNonce:
        try:
            issued = self.store.issue(size or self.config.nonce_size)
        except BytereplayError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"the nonce store failed: {exc}") from None
        self.metrics.nonces_issued.inc()
        return issued

    # -- appraisal --------------------------------------------------------------------

    def begin(self, data: bytes | str, fmt: str | None = None, *, replay: bool = True,
              external_tokens: list[Any] | None = None,
              replay_method: str | None = None, profile: str | None = None,
              session_nonce: bytes | None = None) -> Appraisal:
        """Every step up to replay. Raises only `TooLargeError`, `StoreUnavailable` and,
        before anything is consumed, `UsageError` for an unknown `replay_method` (the
        caller's choice for this appraisal, e.g. `full` where its relying party's policy
        asks for a full replay; None: the configured method) or an unknown EAR `profile`
        (a URI or a short name, `bytereplay.ear.profile_of`; None: the configured one).
        `session_nonce` (a challenge-response session's) refuses Evidence bound to any
        other nonce without touching that nonce."""
        check_replay_method(replay_method)
        if profile is not None:
            ear.profile_of(profile)
        inputs = Inputs(data, fmt, replay, external_tokens, replay_method, profile,
                        session_nonce)
        a = Appraisal(inputs=inputs)
        for step in BEFORE_REPLAY:
            step.run(self, a, inputs)
        if a.failed:
            failed = [k for k in GATES
                      if a.checks.get(k, OK) != OK and not a.checks[k].startswith("not ")]
            a.replay_skip = f"an earlier check failed ({', '.join(failed) or 'nonce'})"
        elif not self.config.replay:
            a.replay_skip = "replay is disabled in the verifier's configuration"
        elif not replay:
            a.replay_skip = "replay was not requested"
        return a

    @property
    def replay_run(self) -> ReplayRun | None:
        """How this verifier replays: on the fleet, in this process, or not at all."""
        fleet, replayer = self.fleet, self.replayer
        if fleet is not None:
            return lambda a: fleet.replay(a.id, _decoded(a).request, _decoded(a).record,
                                          a.inputs.replay_method)
        if replayer is not None:
            return lambda a: replayer.replay(_decoded(a).request, _decoded(a).record,
                                             method=a.inputs.replay_method)
        return None

    def needs_replay(self, a: Appraisal) -> bool:
        return a.replay_skip is None and (self.replayer is not None or self.fleet is not None)

    def finish(self, a: Appraisal) -> Result:
        """Replay (when it is due; on the calling thread), policy, EAR."""
        REPLAY.run(self, a, a.inputs)
        devices: dict[str, dict[str, int]] = {}
        try:
            verdict = self.policy.evaluate(a.facts)
            vector, reasons = dict(verdict.vector), verdict.reasons
            devices = verdict.devices
            a.checks["policy"] = OK
        except PolicyError as exc:
            log.error("%s", exc.detail)
            vector = {c: VERIFIER_MALFUNCTION for c in CLAIMS}
            reasons = ("the appraisal policy failed: the verifier makes no claim",)
            a.checks["policy"] = f"failed: {exc.detail}"
        if a.devices:  # composite evidence: one submod per device, each its own vector
            malfunction = {c: VERIFIER_MALFUNCTION for c in CLAIMS}
            nvidia_trust = self.trust().get("nvidia")
            test_root = bool(nvidia_trust is not None and nvidia_trust.test_root)
            exts = {"cpu": {ear.TEE: a.facts["tee"], ear.CHECKS: {"quote": a.checks["quote"]}}}
            exts.update({dev.name: {ear.TEE: device_tee(dev, test_root),
                                    ear.CHECKS: {"quote": dev.detail}} for dev in a.devices})
            device_submods = {name: (devices.get(name, malfunction), ext)
                              for name, ext in exts.items()}
        else:
            device_submods = {}
        assert a.replay is not None
        d = a.decoded
        ext = extensions(
            replay=a.replay.to_json(),
            preflight=a.preflight,
            missing=a.preflight["missing"] if a.preflight is not None else [],
            output_hash=d.output_hash if d is not None else None,
            record_digest=d.record_digest if d is not None else None,
            tee=a.facts["tee"],
            checks=a.checks,
            reasons=reasons,
        )
        raw = evidence_bytes(a.inputs.data, a.inputs.fmt) if self.config.ear_raw_evidence \
            else None
        result = issue(key=self.key, vector=vector, nonce=a.nonce_text,
                       policy_id=self.policy.policy_id, ext=ext,
                       profile=a.inputs.profile or self.config.ear_profile, raw_evidence=raw,
                       devices=device_submods)
        if self.fleet is not None and a.replay_skip is None:
            # One EAR per appraisal id, whoever finishes it (the first stored wins).
            stored = self.fleet.answer_once(a.id, {**result.to_json(), "claims": result.claims,
                                                   "profile": result.profile})
            result = Result(token=stored["result"], claims=stored["claims"],
                            status=stored["status"], replay=stored["replay"],
                            profile=stored.get("profile", result.profile))
        m = self.metrics
        m.child(m.appraisals, result.status).inc()
        m.child(m.verdicts, a.replay.verdict).inc()
        if a.replay.seconds is not None:
            m.replay_seconds.observe(a.replay.seconds)
        m.child(m.latency, "yes" if a.replay.seconds is not None else "no").observe(
            time.perf_counter() - a.started)
        return result

    def appraise(self, data: bytes | str, fmt: str | None = None, *, replay: bool = True,
                 external_tokens: list[Any] | None = None,
                 replay_method: str | None = None, profile: str | None = None) -> Result:
        """The whole pipeline on the calling thread (the CLI and in-process callers);
        `profile` picks the EAR profile (None: the configured one)."""
        return self.finish(self.begin(data, fmt, replay=replay, external_tokens=external_tokens,
                                      replay_method=replay_method, profile=profile))

    def submit(self, a: Appraisal) -> Future[Result]:
        """Finish `a` in the replay worker pool. Raises `QueueFull` when too many wait."""
        with self._inflight_lock:
            if self.needs_replay(a) and self._inflight >= self.config.replay_queue:
                raise QueueFull(f"{self._inflight} replays are waiting; try again later")
            self._inflight += 1
            self.metrics.replay_queue.set(self._inflight)
        future = self._pool.submit(self.finish, a)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Result]) -> None:
        with self._inflight_lock:
            self._inflight -= 1
            self.metrics.replay_queue.set(self._inflight)

    def queue_full(self) -> bool:
        with self._inflight_lock:
            return self._inflight >= self.config.replay_queue

    # -- publication ------------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        """The current EAR signing key."""
        return self.keys.current

    def jwks(self) -> dict[str, Any]:
        """The current key and the rotated-out ones not yet retired."""
        return self.keys.jwks()

    def info(self) -> dict[str, Any]:
        from bytereplay import __version__

        cfg = self.config
        trusts = self.trust()
        return {
            "verifier": f"bytereplay {__version__}",
            "ear": {"profile": ear.profile_of(cfg.ear_profile).uri,
                    "profiles": [p.uri for p in ear.PROFILES.values()],
                    "raw_evidence": cfg.ear_raw_evidence,
                    "alg": self.key.alg, "kid": self.key.kid, "jwks": "/.well-known/jwks.json",
                    "keys": [{"kid": k.key.kid, "retire_at": k.to_json()["retire_at"]}
                             for k in self.keys.entries()]},
            "process": {"pid": os.getpid()},
            "appraisal_policy": {"id": self.policy.policy_id, "path": str(self.policy.path),
                                 "cached": self.policy.cached},
            "trust": {
                "simulated_cas": [{"origin": s.origin, "path": s.path} for s in self.trust_sources],
                "schemes": {kind: {"configured": kind in trusts and trusts[kind].configured,
                                   "test_root": kind in trusts and trusts[kind].test_root}
                            for kind in known_kinds()},
                "notes": self.trust_lines(),
            },
            "external": [{"name": s.name, "issuer": s.issuer, "jwks": s.jwks,
                          "algorithms": list(s.algorithms)} for s in cfg.external],
            "reference_values": self.references.to_json() if self.references.configured else None,
            "provisioning": {"enabled": self.provisioning.enabled,
                             "signed_only": bool(self.provisioning.keys),
                             "stored": str(self.provisioning.store.path)},
            "nonces": {"ttl_s": cfg.nonce_ttl_s, "size": cfg.nonce_size, "mode": cfg.nonce_mode,
                       "store": self.store.kind},
            "replay": self.fleet.info() if self.fleet is not None else
            self.replayer.info() if self.replayer is not None else {"enabled": False},
            "now": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    @property
    def references(self) -> reference_values.ReferenceValues:
        """The configured file's values with those provisioned as CoRIM (re-read when the
        store changes): one set, compared in one way."""
        provisioned = self.provisioning.store.current()
        seen = self._refs_seen
        if seen is None or seen[0] is not provisioned:
            seen = self._refs_seen = (provisioned, self.file_references.union(provisioned))
        return seen[1]
    def refresh_metrics(self) -> None:
        """Read what /metrics shows from elsewhere (the fleet's queues and workers)."""
        if self.fleet is not None:
            self.fleet.refresh_metrics()

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop_waiting()  # threads that only wait for a worker end now
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self.fleet is not None:
            self.fleet.close()
        self.store.close()
