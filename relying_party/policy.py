"""Rego appraisal policies: loading by name or path, compiling once, evaluating.

A policy is one Rego module. It reads the input document built by
`relying_party.evaluate` (its format is written at the top of every shipped policy)
and defines in its package:

- `decision`: `{"allow": bool, "reasons": [text], "notes": [text]}`, where `allow`
  is `count(deny_reasons) == 0` and `reasons` are those deny reasons, so the two
  cannot drift (a decision where they disagree raises `PolicyError`);
- optionally `max_age_seconds` and `leeway_seconds` (integers): the freshness window
  that `evaluate` checks `iat` against (defaults 300 and 30).

The shipped policies (`default`, `strict`, `dev`) live in the repository's `policies/`
folder, beside the verifier's `appraisal.rego`: one copy. A source checkout or an
editable install reads them there; a wheel carries the same files as package data
(`policies/` mapped to `bytereplay/policies/`, see `shipped_dir`). Any other policy is
loaded by path; a name is one of the shipped ones.

A policy is refused at load, with `PolicyError`, when its text does not compile
(the message names `file:line`), when it declares no package, when its parameters are
not integers, or when it allows a result whose signature did not verify.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytereplay.encoding import sha256_tag
from bytereplay.errors import PolicyError
from bytereplay.rego import RegoModule
from bytereplay.resources import POLICY_DIRS, policies_dir
from relying_party.decision import PolicyRef

Decision = tuple[bool, tuple[str, ...], tuple[str, ...]]

SHIPPED: tuple[str, ...] = ("default", "strict", "dev")
DEFAULT_MAX_AGE = 300
DEFAULT_LEEWAY = 30
MAX_POLICY_BYTES = 1 << 20
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$",
                         re.MULTILINE)


MEMO_SIZE = 1024


@dataclass
class Policy:
    """A compiled policy (`bytereplay.rego.RegoModule`). Safe to share between threads
    (queries are serialised).

    Decisions are memoised by the canonical JSON of the input document (an LRU of
    `MEMO_SIZE`), which holds no per-result values (no times, hashes or nonces), so a
    steady stream of results from one verifier mostly hits the memo. A policy that calls
    a non-deterministic builtin (`time.now_ns`, `http.send`, ...) is never memoised.
    """

    name: str
    path: str
    text: str
    digest: str
    package: str
    max_age_seconds: int
    leeway_seconds: int
    _module: RegoModule[Decision] = field(repr=False)
    memoised: bool = True

    @property
    def _memo(self) -> RegoModule[Decision]:
        """What is remembered (`len` of it): the module's memo."""
        return self._module

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(name=self.name, digest=self.digest, path=self.path)

    def decide(self, document: dict[str, Any]) -> Decision:
        """Run the policy on an input document: (allow, deny reasons, notes)."""
        return self._module.evaluate(document, remember=self.memoised)


def _check_decision(path: str, value: Any) -> Decision:
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: `decision` is undefined or not an object")
    allow, reasons, notes = value.get("allow"), value.get("reasons"), value.get("notes", [])
    if not isinstance(allow, bool):
        raise PolicyError(f"{path}: decision.allow must be a boolean")
    for name, items in (("reasons", reasons), ("notes", notes)):
        if not isinstance(items, list) or not all(isinstance(r, str) for r in items):
            raise PolicyError(f"{path}: decision.{name} must be a list of text")
    assert isinstance(reasons, list) and isinstance(notes, list)
    if allow == bool(reasons):
        raise PolicyError(
            f"{path}: decision.allow ({allow}) disagrees with its deny reasons {reasons}: "
            "allow must be count(deny_reasons) == 0"
        )
    return allow, tuple(reasons), tuple(notes)


def shipped_dir() -> Path:
    """The folder that holds the shipped policies."""
    folder = policies_dir(f"{SHIPPED[0]}.rego")
    if folder is None:
        raise PolicyError(
            "the shipped policies are not installed (looked in "
            + ", ".join(str(c) for c in POLICY_DIRS) + "); give a path to a .rego file"
        )
    return folder


def resolve(spec: str | Path) -> tuple[str, Path]:
    """(display name, file) for a policy name (`default`, `strict`, `dev`) or a path."""
    if isinstance(spec, str) and _NAME_RE.match(spec):
        if spec not in SHIPPED:
            raise PolicyError(
                f"unknown policy {spec!r}; the shipped policies are {', '.join(SHIPPED)} "
                "(or give a path to a .rego file)"
            )
        return spec, shipped_dir() / f"{spec}.rego"
    path = Path(spec).expanduser()
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    return str(path), path


_UNVERIFIED_PROBE: dict[str, Any] = {
    "version": 1,
    "checks": {
        "signature": {"ok": False, "detail": "load-time probe: no signature verified"},
        "format": {"ok": False, "detail": "not read: the signature did not verify"},
        "fresh": {"ok": False, "detail": "not checked", "max_age_seconds": 0,
                  "leeway_seconds": 0},
        "nonce": {"ok": False, "required": True, "detail": "not checked"},
        "output_hash": {"ok": False, "given": False, "detail": "not checked"},
        "app": [],
    },
    "ear": None,
}


def _param(module: RegoModule[Decision], package: str, name: str, default: int) -> int:
    value = module.query(f"data.{package}.{name}")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10 ** 8:
        raise PolicyError(f"{module.path}: {name} must be a non-negative integer, not {value!r}")
    return value


def compile_policy(name: str, path: Path, source: bytes) -> Policy:
    """Compile one policy's text; refuse it with a located PolicyError when it is broken."""
    shown = str(path)
    if len(source) > MAX_POLICY_BYTES:
        raise PolicyError(f"{shown}: policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source[:exc.start].count(b"\n") + 1
        raise PolicyError(f"{shown}:{line}: policy is not valid UTF-8") from None
    m = _PACKAGE_RE.search(text)
    if not m:
        raise PolicyError(f"{shown}:1: policy declares no package")
    package = m.group(1)
    module: RegoModule[Decision] = RegoModule(
        shown, text, f"data.{package}.decision", lambda value: _check_decision(shown, value),
        var="decision", memo_size=MEMO_SIZE)
    policy = Policy(
        name=name, path=shown, text=text, digest=sha256_tag(source), package=package,
        max_age_seconds=_param(module, package, "max_age_seconds", DEFAULT_MAX_AGE),
        leeway_seconds=_param(module, package, "leeway_seconds", DEFAULT_LEEWAY),
        _module=module, memoised=module.memoised,
    )
    allow, _, _ = policy.decide(_UNVERIFIED_PROBE)
    if allow:
        raise PolicyError(f"{shown}: policy allows a result whose signature did not verify")
    return policy


_cache: dict[tuple[str, str, int, int], Policy] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 64


def load_policy(spec: str | Path | Policy = "default") -> Policy:
    """A compiled policy by name or path, from a cache keyed by file, mtime and size."""
    if isinstance(spec, Policy):
        return spec
    name, path = resolve(spec)
    try:
        st = path.stat()
        key = (name, str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    policy = compile_policy(name, path, source)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.pop(next(iter(_cache)))
        _cache[key] = policy
    return policy
