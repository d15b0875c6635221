"""Import regopy safely in a process that may also load torch.

regopy's native library exports its own `operator new/delete`; loaded first, it
captures libstdc++'s allocator and a later `import torch` aborts the process
(double free). Loading libstdc++ into the global scope first avoids that. Every
module that needs regopy imports it through here.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Any


def load_regopy() -> Any:
    if "regopy" not in sys.modules:
        # Not glibc/libstdc++ (macOS, musl): nothing to pin.
        with contextlib.suppress(OSError):
            ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    import regopy

    return regopy
