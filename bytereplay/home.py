"""The state directory `$BYTEREPLAY_HOME` (default `~/.bytereplay`) and its fixed layout.

An attester and a verifier started with the same home work together out of the box:
the verifier trusts the simulated CA found here, and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, UsageError

ENV_VAR = "BYTEREPLAY_HOME"
# The simulated platform CA certificate inside `Home.simulated_ca`: the attester writes
# it, a verifier sharing the home trusts it.
SIMULATED_CA_FILE = "ca.pem"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> Home:
        path = Path(root or os.environ.get(ENV_VAR) or Path.home() / ".bytereplay").expanduser()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(path.resolve())

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def attester_key(self) -> Path:
        return self.keys / "attester-evidence.pem"

    @property
    def verifier_key(self) -> Path:
        return self.keys / "verifier-ear.pem"

    @property
    def simulated_ca(self) -> Path:
        """Folder of the simulated platform CA and its attestation key."""
        return self.root / "simulated-tee"

    @property
    def tdx_collateral(self) -> Path:
        """The attester's TDX collateral cache (`tdx_collateral_url` answers)."""
        return self.root / "tdx-collateral"

    @property
    def store(self) -> Path:
        return self.root / "verifier.sqlite3"

    @property
    def provisioned_values(self) -> Path:
        """Reference values provisioned as CoRIM (`verifier.provisioning`), in the
        reference-values JSON form."""
        return self.root / "reference-values.provisioned.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    def load_config(self, path: str | Path | None = None) -> dict[str, Any]:
        """The configuration file (JSON) or {} when none exists at the default place."""
        target = Path(path) if path else self.config
        if not target.exists():
            if path:
                raise UsageError(f"configuration file {target} does not exist")
            return {}
        try:
            value = strict_json_loads(target.read_bytes(), max_bytes=1 << 20)
        except BytereplayError as exc:
            raise UsageError(f"{target}: {exc.detail}") from None
        if not isinstance(value, dict):
            raise UsageError(f"{target}: the configuration is a JSON object")
        return value
