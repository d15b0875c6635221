"""Where the shipped Rego policies are: one lookup for the verifier and the relying party.

A wheel carries the repository's `policies/` as the data package `bytereplay.policies`
(see pyproject.toml); a source checkout or an editable install reads `<repo>/policies/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
POLICY_DIRS: tuple[Path, ...] = (_PACKAGE / "policies", _PACKAGE.parent / "policies")


def policies_dir(probe: str = "default.rego") -> Path | None:
    """The first folder holding `probe`, or None when the policies are not installed."""
    for folder in POLICY_DIRS:
        if (folder / probe).is_file():
            return folder
    return None


def shipped_policy(name: str) -> Path:
    """Path of a shipped policy file such as `appraisal.rego` (may not exist if not installed)."""
    folder = policies_dir(name)
    return (folder or POLICY_DIRS[-1]) / name
