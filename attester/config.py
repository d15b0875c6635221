"""Attester configuration: the `"attester"` object of the configuration file.

    {"attester": {
        "provider": "simulated",            # simulated | tsm | nvidia
        "container_digest": "sha256:...",   # OCI digest of the running image
        "operator": "ops@example.org",
        "verifier_ref": "http://127.0.0.1:8702",
        "veraison_verifier": null,          # a verifier's Veraison API base URL (below)
        "veraison_submit": false,
        "model_dir": null,                  # null: the fixture model in the repo
        "device": "cpu", "dtype": "float32", "threads": 1,
        "evidence_format": "jwt",           # default when a request names none
        "key_alg": "ES256",                 # evidence key algorithm on first start
        "evidence_key": null,               # shared key file (0600); null: the home's
        "key_retire_after_s": 86400,        # `bytereplay keys rotate`: how long the old key stays listed
        "tsm_root": "/sys/kernel/config/tsm/report",
        "tdx_collateral_url": null,         # Intel PCS / PCCS v4 base URL: tsm TDX quotes carry collateral
        "tdx_collateral_cache": null,       # its disk cache; null: <home>/tdx-collateral
        "nvidia_device": 0,
        "gpu_evidence": [],                 # GPU indexes attested beside the CPU quote (composite)
        "max_body_bytes": 65536, "max_input_chars": 8192,
        "max_new_tokens": 256, "max_pending": 8
    }}

`veraison_verifier` (an http(s) base URL, e.g. "http://127.0.0.1:8702"): a /v1/infer
request without a `nonce` gets its challenge from that verifier's Veraison
challenge-response API (`newSession`), and the answer names the `session` to POST the
Evidence to. With `veraison_submit` the attester posts it there itself and adds the
verifier's EAR as `result` (unchecked here: the relying party checks it).

Every key is optional; unknown keys and wrong types are refused with a message that
names the key. `BYTEREPLAY_CONTAINER_DIGEST` in the environment fills
`container_digest` when the file does not set it (handy in a container entrypoint).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.eat import MAX_GPUS
from bytereplay.encoding import OCI_DIGEST_RE, is_int
from bytereplay.errors import UsageError
from bytereplay.home import Home
from bytereplay.keys import SIGNING_ALGS

CONTAINER_ENV = "BYTEREPLAY_CONTAINER_DIGEST"
PROVIDERS = ("simulated", "tsm", "nvidia")
FORMATS = ("jwt", "cwt")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class AttesterConfig:
    provider: str = "simulated"
    container_digest: str | None = None
    operator: str | None = None
    verifier_ref: str | None = None
    veraison_verifier: str | None = None
    veraison_submit: bool = False
    model_dir: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    evidence_format: str = "jwt"
    key_alg: str = "ES256"
    evidence_key: str | None = None
    key_retire_after_s: float = 86400.0
    tsm_root: str | None = None
    tdx_collateral_url: str | None = None
    tdx_collateral_cache: str | None = None
    nvidia_device: int = 0
    gpu_evidence: tuple[int, ...] = ()
    max_body_bytes: int = 64 * 1024
    max_input_chars: int = 8192
    max_new_tokens: int = 256
    max_pending: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.gpu_evidence, list):  # from JSON
            object.__setattr__(self, "gpu_evidence", tuple(self.gpu_evidence))
        _validate(self)

    @classmethod
    def from_mapping(cls, data: Any, *, where: str = "attester") -> AttesterConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UsageError(f"{where}: the attester configuration is a JSON object")
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise UsageError(f"{where}.{key}: unknown setting; known: {', '.join(names)}")
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except UsageError as exc:
            raise UsageError(f"{where}.{exc.detail}") from None

    def with_overrides(self, **changes: Any) -> AttesterConfig:
        """A copy with the non-None `changes` applied (command-line flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def model_path(self) -> Path | None:
        return Path(self.model_dir).expanduser() if self.model_dir else None

    def evidence_key_path(self, home: Home) -> Path:
        """The evidence key ring's file (`evidence_key`, or the home's, made on first start)."""
        return Path(self.evidence_key).expanduser() if self.evidence_key else home.attester_key

    def collateral_cache(self, home: Home) -> Path:
        """Where the tsm provider caches TDX collateral (`tdx_collateral_cache` or the home's)."""
        if self.tdx_collateral_cache:
            return Path(self.tdx_collateral_cache).expanduser()
        return home.tdx_collateral


def _validate(c: AttesterConfig) -> None:
    def text(name: str, value: Any, optional: bool = True) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            raise UsageError(f"{name}: expected non-empty text")

    def bounded(name: str, value: Any, lo: int, hi: int) -> None:
        if not is_int(value) or not lo <= value <= hi:
            raise UsageError(f"{name}: expected an integer in {lo}..{hi}")

    def choice(name: str, value: Any, options: tuple[str, ...]) -> None:
        if value not in options:
            raise UsageError(f"{name}: expected one of {', '.join(options)}, got {value!r}")

    choice("provider", c.provider, PROVIDERS)
    text("container_digest", c.container_digest)
    if c.container_digest is not None and not OCI_DIGEST_RE.match(c.container_digest):
        raise UsageError("container_digest: expected an OCI digest 'sha256:<64 hex>'")
    for name in ("operator", "verifier_ref", "model_dir", "tsm_root", "tdx_collateral_url",
                 "tdx_collateral_cache", "evidence_key", "veraison_verifier"):
        text(name, getattr(c, name))
    if c.veraison_verifier is not None and not c.veraison_verifier.startswith(
            ("http://", "https://")):
        raise UsageError("veraison_verifier: expected an http:// or https:// base URL")
    if not isinstance(c.veraison_submit, bool):
        raise UsageError("veraison_submit: expected true or false")
    if c.veraison_submit and c.veraison_verifier is None:
        raise UsageError("veraison_submit: needs veraison_verifier")
    if c.tdx_collateral_url is not None and not c.tdx_collateral_url.startswith(
            ("http://", "https://")):
        raise UsageError("tdx_collateral_url: expected an http:// or https:// PCS/PCCS base URL")
    text("device", c.device, optional=False)
    choice("dtype", c.dtype, DTYPES)
    bounded("threads", c.threads, 1, 1024)
    choice("evidence_format", c.evidence_format, FORMATS)
    choice("key_alg", c.key_alg, SIGNING_ALGS)
    if isinstance(c.key_retire_after_s, bool) or not isinstance(c.key_retire_after_s, (int, float)) \
            or not c.key_retire_after_s >= 0:
        raise UsageError("key_retire_after_s: expected a number of seconds >= 0")
    bounded("nvidia_device", c.nvidia_device, 0, 63)
    if not isinstance(c.gpu_evidence, tuple) or len(c.gpu_evidence) > MAX_GPUS or \
            len(set(c.gpu_evidence)) != len(c.gpu_evidence) or \
            not all(is_int(i) and 0 <= i <= 63 for i in c.gpu_evidence):
        raise UsageError(f"gpu_evidence: expected a list of at most {MAX_GPUS} distinct GPU "
                         "indexes 0..63")
    bounded("max_body_bytes", c.max_body_bytes, 1024, 64 << 20)
    bounded("max_input_chars", c.max_input_chars, 1, 1 << 18)
    bounded("max_new_tokens", c.max_new_tokens, 1, 4096)
    bounded("max_pending", c.max_pending, 1, 1024)


def load_config(home: Home, path: str | Path | None = None) -> AttesterConfig:
    """The attester configuration from `path` (or the home's config.json), with defaults."""
    doc = home.load_config(path)
    config = AttesterConfig.from_mapping(doc.get("attester"))
    env_digest = os.environ.get(CONTAINER_ENV)
    if config.container_digest is None and env_digest:
        try:
            config = config.with_overrides(container_digest=env_digest.strip())
        except UsageError as exc:
            raise UsageError(f"${CONTAINER_ENV}: {exc.detail}") from None
    return config
