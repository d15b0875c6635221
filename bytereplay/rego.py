"""What the verifier's and the relying party's Rego policies share.

- `load_regopy`: import regopy safely in a process that may also load torch. regopy's
  native library exports its own `operator new/delete`; loaded first, it captures
  libstdc++'s allocator and a later `import torch` aborts the process (double free).
  Loading libstdc++ into the global scope first avoids that. Every module that needs
  regopy imports it through here.
- `is_pure`: whether a policy's answer is a function of its input only.
- `InputMemo`: answers of a pure policy remembered by the canonical JSON of the input.
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

T = TypeVar("T")

# Builtins whose answer is not a function of the input: a policy that calls one is
# evaluated every time instead of memoised.
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
