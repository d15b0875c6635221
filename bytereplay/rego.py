"""What the verifier's and the relying party's Rego policies share.

- `load_regopy`: import regopy safely in a process that may also load torch. regopy's
  native library exports its own `operator new/delete`; loaded first, it captures
  libstdc++'s allocator and a later `import torch` aborts the process (double free).
  Loading libstdc++ into the global scope first avoids that. Every module that needs
  regopy imports it through here.
- `is_pure`: whether a policy's answer is a function of its input only.
- `InputMemo`: answers of a pure policy remembered by the canonical JSON of the input.
- `RegoModule`: one compiled policy module and its query, the one wrapper both roles
  use (the verifier's appraisal policy, the relying party's decision policies):
  compiled once, evaluated under a lock (a regopy interpreter is not thread-safe),
  memoised by input when the module is pure; errors as `PolicyError` naming
  `file:line` where rego-cpp says where.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bytereplay.encoding import compact_json
from bytereplay.errors import PolicyError

T = TypeVar("T")

# Builtins whose answer is not a function of the input: a policy that calls one is
# evaluated every time instead of memoised.
_ERROR_RE = re.compile(r"\(error (\d+):")
_ERRMSG_RE = re.compile(r"\(errormsg (\d+):")
_IMPURE_RE = re.compile(r"\b(time\.now_ns|http\.send|rand\.intn|uuid\.rfc4122|opa\.runtime|"
                        r"net\.lookup_ip_addr)\b")


def load_regopy() -> Any:
    if "regopy" not in sys.modules:
        # Not glibc/libstdc++ (macOS, musl): nothing to pin.
        with contextlib.suppress(OSError):
            ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    import regopy

    return regopy


def is_pure(source: str) -> bool:
    """Whether the Rego `source` calls no builtin whose answer is not a function of the
    input (`time.now_ns`, `http.send`, `rand.intn`, ...)."""
    return _IMPURE_RE.search(source) is None


class InputMemo(Generic[T]):
    """An LRU of a pure policy's answers by the canonical JSON of its input (sorted keys);
    safe to share between threads. The answer is computed outside the lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._answers: OrderedDict[bytes, T] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get_or_compute(self, document: Any, compute: Callable[[], T]) -> T:
        key = compact_json(document, sort_keys=True)
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None:
                self._answers.move_to_end(key)
                return hit
        answer = compute()
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer


def error_text(exc: BaseException) -> str:
    """The message of a rego-cpp error sequence (or the exception's text, shortened)."""
    text = str(exc)
    m = _ERRMSG_RE.search(text)
    if m:
        n = int(m.group(1))
        return text[m.end():m.end() + n]
    return " ".join(text.split())[:300]


def located(path: str, source: bytes, exc: BaseException) -> PolicyError:
    """A PolicyError naming `file:line: message` from a rego-cpp error sequence."""
    text = str(exc)
    msg = error_text(exc)
    m = _ERROR_RE.search(text)
    line = None
    if m:
        n = int(m.group(1))
        rest = text[m.end() + n:].split("|")
        if len(rest) >= 2 and rest[1].isdigit():
            offset = int(rest[1])  # a byte offset into the module's UTF-8 text
            line = source[:offset].count(b"\n") + 1
    where = f"{path}:{line}" if line is not None else path
    return PolicyError(f"{where}: {msg}")


class RegoModule(Generic[T]):
    """One Rego module compiled with the query `<var> = <rule>`.

    `evaluate(document)` sets the document as `input`, runs the query and hands the
    value bound to `var` (None when undefined) to `convert`, whose answer is returned
    and, for a pure module with `memo_size`, remembered by the input's canonical JSON.
    Raises `PolicyError` at compile time (located) and on an evaluation failure.
    """

    def __init__(self, path: str, text: str, rule: str, convert: Callable[[Any], T], *,
                 var: str = "x", memo_size: int = 0, memoise: bool = True) -> None:
        regopy = load_regopy()
        self._regopy = regopy
        self.path, self.text, self.var, self._convert = path, text, var, convert
        interp = regopy.Interpreter()
        interp.log_level = regopy.LogLevel.NONE  # errors come back as exceptions
        try:
            interp.add_module(path, text)
            bundle = interp.build(f"{var} = {rule}", [])
        except regopy.RegoError as exc:
            raise located(path, text.encode("utf-8"), exc) from None
        if not bundle.ok():
            raise PolicyError(f"{path}: policy did not compile")
        self._interp, self._bundle = interp, bundle
        self._lock = threading.Lock()
        self.memoised = memoise and memo_size > 0 and is_pure(text)
        self._memo: InputMemo[T] = InputMemo(memo_size)
        self.evaluations = 0

    def __len__(self) -> int:
        """How many answers are remembered."""
        return len(self._memo)

    def evaluate(self, document: Any, *, remember: bool = True) -> T:
        """The answer for `document` (`remember=False`: evaluated, never memoised)."""
        if not (self.memoised and remember):
            return self._evaluate(document)
        return self._memo.get_or_compute(document, lambda: self._evaluate(document))

    def _evaluate(self, document: Any) -> T:
        regopy = self._regopy
        with self._lock:
            self.evaluations += 1
            try:
                self._interp.set_input(regopy.Input(document))
                out = self._interp.query_bundle(self._bundle)
            except regopy.RegoError as exc:
                raise PolicyError(f"{self.path}: evaluation failed: {error_text(exc)}") from None
            except ValueError as exc:
                # rego-cpp returns strings without JSON escaping: text the policy itself
                # builds with a quote or backslash cannot be read back.
                raise PolicyError(
                    f"{self.path}: the decision is not valid JSON ({exc}); a string built by "
                    "the policy holds a quote or backslash (rego-cpp quotes computed strings "
                    "formatted with sprintf %s: build them with concat)"
                ) from None
            if not out.ok():
                raise PolicyError(f"{self.path}: evaluation failed: {out}")
            results = out.results
        value = results[0].bindings.get(self.var) if results else None
        return self._convert(value)

    def query(self, text: str) -> Any:
        """The value of a one-off query `x = <text>` (None when undefined)."""
        with self._lock:
            try:
                out = self._interp.query(f"x = {text}")
            except self._regopy.RegoError as exc:
                raise PolicyError(f"{self.path}: cannot read {text}: {error_text(exc)}") from None
        results = out.results if out.ok() else []
        if not results or "x" not in results[0].bindings:
            return None
        return results[0].bindings["x"]
