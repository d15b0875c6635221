"""bytereplay: replay the bytes before you trust the answer.

Shared formats, the run record and the command line. This package never imports
torch, so a relying application can use it on its own.
"""

__version__ = "0.1.0"
