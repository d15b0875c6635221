"""configfs-tsm as the kernel behaves, on a plain directory tree, answering with quotes
under a TEST ROOT (`tdx_test_root.TdxTestRoot` or `snp_test_root.SnpTestRoot`).

With it the attester's real `tsm` capture and the verifier's real tdx/snp schemes meet as
on hardware; only the root differs, and the verifier names it a test root.
"""

from __future__ import annotations

from pathlib import Path

from snp_test_root import SnpTestRoot
from tdx_test_root import TdxTestRoot

from attester.tee.tsm import OsFs


class TestRootKernel(OsFs):
    """A report entry per mkdir; writing `inblob` produces the outblob (and, for SEV-SNP,
    the extended report's certificate table in auxblob). `races` simulates other writers;
    `ignore_inblob` makes a quote that binds zeros instead of the report data."""

    __test__ = False  # not a pytest class

    def __init__(self, root: TdxTestRoot | SnpTestRoot, *, races: int = 0, version: int = 4,
                 ignore_inblob: bool = False) -> None:
        self.root, self.races, self.version = root, races, version
        self.provider = "sev_guest" if isinstance(root, SnpTestRoot) else "tdx_guest"
        self.ignore_inblob = ignore_inblob
        self.entries: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.entries.append(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        for name in ("inblob", "outblob", "auxblob"):
            (path / name).write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name != "inblob":
            return
        gen = int((path.parent / "generation").read_text()) + 1
        if self.races > 0:  # another process wrote too
            self.races -= 1
            gen += 1
        (path.parent / "generation").write_text(f"{gen}\n")
        rd = bytes(64) if self.ignore_inblob else data
        if isinstance(self.root, SnpTestRoot):
            (path.parent / "outblob").write_bytes(self.root.report(rd, version=3))
            (path.parent / "auxblob").write_bytes(self.root.cert_table())
        else:
            (path.parent / "outblob").write_bytes(self.root.quote(rd, version=self.version))

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)
