"""Reference values: the model digests, container digests and runtimes an operator allows.

A JSON file (see `fixtures/reference-values.json`):

    {
      "model_digests": ["sha-256:<64 hex>", ...],
      "container_digests": ["sha256:<64 hex>", ...],
      "runtimes": [{"name": "bytereplay", "version": "0.1.0"}, ...]
    }

Every list is optional. A list that is absent makes no claim about its item
(`not-configured`); a record that lacks the item while a list exists is `missing`;
otherwise the item is `matched` or `unmatched`. No file configured: nothing is claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.encoding import HASH_RE, OCI_DIGEST_RE, strict_json_loads
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.record import RunRecord

MATCHED, UNMATCHED, MISSING, NOT_CONFIGURED = "matched", "unmatched", "missing", "not-configured"
ITEMS = ("model", "container", "runtime")
_KEYS = {"model_digests", "container_digests", "runtimes", "comment"}


@dataclass(frozen=True)
class ReferenceValues:
    model_digests: frozenset[str] | None = None
    container_digests: frozenset[str] | None = None
    runtimes: frozenset[tuple[str, str]] | None = None
    source: str | None = None

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.model_digests, self.container_digests,
                                          self.runtimes))

    def compare(self, record: RunRecord) -> dict[str, str]:
        """{"model", "container", "runtime"} -> matched | unmatched | missing | not-configured."""
        runtime: tuple[str, str] | None = None
        if record.is_present("runtime.name") and record.is_present("runtime.version"):
            runtime = (str(record.get("runtime.name")), str(record.get("runtime.version")))
        return {
            "model": _status(self.model_digests, record.get("model.digest")
                             if record.is_present("model.digest") else None),
            "container": _status(self.container_digests, record.get("container.digest")
                                 if record.is_present("container.digest") else None),
            "runtime": _status(self.runtimes, runtime),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model_digests": sorted(self.model_digests or ()),
            "container_digests": sorted(self.container_digests or ()),
            "runtimes": [{"name": n, "version": v} for n, v in sorted(self.runtimes or ())],
        }


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

    runtimes: frozenset[tuple[str, str]] | None = None
    if "runtimes" in doc:
        items = doc["runtimes"]
        ok = isinstance(items, list) and all(
            isinstance(r, dict) and set(r) == {"name", "version"}
            and isinstance(r["name"], str) and isinstance(r["version"], str) for r in items)
        if not ok:
            raise UsageError(f"{where}: runtimes is a list of {{\"name\", \"version\"}} objects")
        runtimes = frozenset((r["name"], r["version"]) for r in items)
    return ReferenceValues(
        model_digests=digests("model_digests", HASH_RE, "'sha-256:<hex>' digests"),
        container_digests=digests("container_digests", OCI_DIGEST_RE, "'sha256:<hex>' digests"),
        runtimes=runtimes,
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
