"""Reference values: the model digests, container digests and runtimes an operator allows.

A JSON file (see `fixtures/reference-values.json`):

    {
      "model_digests": ["sha-256:<64 hex>", ...],
      "container_digests": ["sha256:<64 hex>", ...],
      "runtimes": [{"name": "bytereplay", "version": "0.1.0"}, ...],
      "frameworks": [{"name": "torch", "version": "2.13.0"}, ...]
    }

The same document comes from a CoRIM (`bytereplay.corim`, provisioned through
`verifier.provisioning`), so both sources meet here and are compared in one way.
`frameworks` names record fields `framework.<name>` (torch, transformers, python, gguf);
a record matches when each named framework's recorded version is one allowed for it.

Every list is optional. A list that is absent makes no claim about its item
(`not-configured`); a record that lacks the item while a list exists is `missing`;
otherwise the item is `matched` or `unmatched`. No file configured: nothing is claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.corim import FRAMEWORKS
from bytereplay.encoding import HASH_RE, OCI_DIGEST_RE, strict_json_loads
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.record import RunRecord

MATCHED, UNMATCHED, MISSING, NOT_CONFIGURED = "matched", "unmatched", "missing", "not-configured"
ITEMS = ("model", "container", "runtime", "framework")
_KEYS = {"model_digests", "container_digests", "runtimes", "frameworks", "comment"}


@dataclass(frozen=True)
class ReferenceValues:
    model_digests: frozenset[str] | None = None
    container_digests: frozenset[str] | None = None
    runtimes: frozenset[tuple[str, str]] | None = None
    frameworks: frozenset[tuple[str, str]] | None = None
    source: str | None = None

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.model_digests, self.container_digests,
                                          self.runtimes, self.frameworks))

    def union(self, other: ReferenceValues) -> ReferenceValues:
        """Values allowed by either (a list absent from both stays absent)."""
        def join(a: frozenset[Any] | None, b: frozenset[Any] | None) -> frozenset[Any] | None:
            return a if b is None else b if a is None else a | b
        sources = [s for s in (self.source, other.source) if s]
        return ReferenceValues(
            model_digests=join(self.model_digests, other.model_digests),
            container_digests=join(self.container_digests, other.container_digests),
            runtimes=join(self.runtimes, other.runtimes),
            frameworks=join(self.frameworks, other.frameworks),
            source=" + ".join(sources) or None)

    def compare(self, record: RunRecord) -> dict[str, str]:
        """{"model", "container", "runtime", "framework"} -> matched | unmatched | missing
        | not-configured."""
        runtime: tuple[str, str] | None = None
        if record.is_present("runtime.name") and record.is_present("runtime.version"):
            runtime = (str(record.get("runtime.name")), str(record.get("runtime.version")))
        return {
            "model": _status(self.model_digests, record.get("model.digest")
                             if record.is_present("model.digest") else None),
            "container": _status(self.container_digests, record.get("container.digest")
                                 if record.is_present("container.digest") else None),
            "runtime": _status(self.runtimes, runtime),
            "framework": self._frameworks(record),
        }

    def _frameworks(self, record: RunRecord) -> str:
        """Every framework named in the values: its recorded version must be allowed;
        one unmatched makes the item unmatched, else one absent makes it missing."""
        if self.frameworks is None:
            return NOT_CONFIGURED
        statuses = set()
        for name in sorted({n for n, _ in self.frameworks}):
            field = f"framework.{name}"
            version = str(record.get(field)) if record.is_present(field) else None
            statuses.add(_status(frozenset(v for n, v in self.frameworks if n == name),
                                 version))
        for status in (UNMATCHED, MISSING):
            if status in statuses:
                return status
        return MATCHED

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model_digests": sorted(self.model_digests or ()),
            "container_digests": sorted(self.container_digests or ()),
            "runtimes": _pairs_json(self.runtimes),
            "frameworks": _pairs_json(self.frameworks),
        }

    def document(self) -> dict[str, Any]:
        """The JSON file's form (`parse` reads it back): only the configured lists."""
        doc: dict[str, Any] = {}
        if self.model_digests is not None:
            doc["model_digests"] = sorted(self.model_digests)
        if self.container_digests is not None:
            doc["container_digests"] = sorted(self.container_digests)
        if self.runtimes is not None:
            doc["runtimes"] = _pairs_json(self.runtimes)
        if self.frameworks is not None:
            doc["frameworks"] = _pairs_json(self.frameworks)
        return doc


def _pairs_json(pairs: frozenset[tuple[str, str]] | None) -> list[dict[str, str]]:
    return [{"name": n, "version": v} for n, v in sorted(pairs or ())]


def _status(allowed: frozenset[Any] | None, value: Any) -> str:
    if allowed is None:
        return NOT_CONFIGURED
    if value is None:
        return MISSING
    return MATCHED if value in allowed else UNMATCHED


def parse(doc: Any, source: str | None = None) -> ReferenceValues:
    where = source or "reference values"
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a JSON object")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}")

    def digests(key: str, pattern: Any, form: str) -> frozenset[str] | None:
        if key not in doc:
            return None
        items = doc[key]
        if not isinstance(items, list) or not all(isinstance(d, str) and pattern.match(d)
                                                  for d in items):
            raise UsageError(f"{where}: {key} is a list of {form}")
        return frozenset(items)

    def pairs(key: str) -> frozenset[tuple[str, str]] | None:
        if key not in doc:
            return None
        items = doc[key]
        ok = isinstance(items, list) and all(
            isinstance(r, dict) and set(r) == {"name", "version"}
            and isinstance(r["name"], str) and isinstance(r["version"], str) for r in items)
        if not ok:
            raise UsageError(f"{where}: {key} is a list of {{\"name\", \"version\"}} objects")
        return frozenset((r["name"], r["version"]) for r in items)

    frameworks = pairs("frameworks")
    unknown_fw = sorted({n for n, _ in frameworks or ()} - set(FRAMEWORKS))
    if unknown_fw:
        raise UsageError(f"{where}: framework {unknown_fw[0]!r} is not one of {list(FRAMEWORKS)}")
    return ReferenceValues(
        model_digests=digests("model_digests", HASH_RE, "'sha-256:<hex>' digests"),
        container_digests=digests("container_digests", OCI_DIGEST_RE, "'sha256:<hex>' digests"),
        runtimes=pairs("runtimes"),
        frameworks=frameworks,
        source=source,
    )


def load(path: Path | None) -> ReferenceValues:
    """The reference values in `path`; none configured => an empty set that claims nothing."""
    if path is None:
        return ReferenceValues()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read reference values {path}: {exc.strerror}") from None
    try:
        doc = strict_json_loads(data, max_bytes=1 << 20)
    except BytereplayError as exc:
        raise UsageError(f"{path}: {exc.detail}") from None
    return parse(doc, str(path))
