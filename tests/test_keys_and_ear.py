"""Keys (0600, RFC 7638 thumbprints), JWT signing, and EAR build/read in both profiles
(more on profiles and submods: tests/test_ear_profiles.py)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from jwcrypto import jwk as jwcrypto_jwk

from bytereplay import ar4si
from bytereplay.ear import (
    PROFILE,
    PROFILE_DRAFT,
    PROFILE_LEGACY,
    build_ear,
    normalise,
    read_ear,
    sign_ear,
)
from bytereplay.errors import KeyConfigError, ResultError, SignatureError
from bytereplay.jose import sign_jwt, verify_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SIGNING_ALGS, SigningKey, check_alg, key_from_jwk, load_or_create_key


def test_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.pem"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path).kid == first.kid


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyConfigError, match="readable by others"):
        load_or_create_key(path)


@pytest.mark.parametrize("alg", SIGNING_ALGS)
def test_thumbprint_matches_an_independent_implementation(alg: str) -> None:
    key = SigningKey.generate(alg)
    independent = jwcrypto_jwk.JWK(**{k: v for k, v in key.jwk.items() if k not in ("alg", "use", "kid")})
    assert key.kid == independent.thumbprint()
    claims = verify_jwt(sign_jwt({"a": 1}, key), {key.kid: key_from_jwk(key.jwk)}, algorithms=(alg,))
    assert claims == {"a": 1}


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "RS1", "hs256"])
def test_symmetric_and_none_algorithms_are_refused(alg: str) -> None:
    with pytest.raises(SignatureError):
        check_alg(alg)


def test_tiers_and_status_never_better_than_worst() -> None:
    assert [ar4si.tier(v) for v in (0, 1, 2, 31, 32, 95, 96, 99, 127, -97)] == [
        "none", "none", "affirming", "affirming", "warning", "warning",
        "contraindicated", "contraindicated", "contraindicated", "contraindicated",
    ]
    assert ar4si.status_of({"hardware": 2, "executables": 32}) == "warning"
    assert ar4si.status_of({"hardware": 2, "executables": 99}) == "contraindicated"
    assert ar4si.status_of({"hardware": 0}) == "none"
    assert ar4si.status_of({}) == "none"


def _ear(profile: str = PROFILE_LEGACY, **vector: int) -> dict[str, object]:
    return build_ear(
        vector=vector or {"instance-identity": 2, "hardware": 32},
        nonce="bm9uY2Utbm9uY2U", iat=int(time.time()), policy_id="policy:test",
        extensions={
            "bytereplay.replay": {"verdict": "match"},
            "bytereplay.output_hash": "sha-256:" + "0" * 64,
        },
        profile=profile,
    )


def test_the_default_profile_is_draft_04() -> None:
    assert PROFILE == PROFILE_DRAFT == "tag:ietf.org,2026:rats/ear#04"
    assert build_ear(vector={"hardware": 2}, nonce=None, iat=1,
                     policy_id="p", extensions={})["eat_profile"] == PROFILE_DRAFT


@pytest.mark.parametrize(("profile", "status_key"), [
    (PROFILE_LEGACY, "ear.status"), (PROFILE_DRAFT, "ear_status"),
])
def test_ear_round_trip_in_both_profiles(profile: str, status_key: str) -> None:
    key = SigningKey.generate()
    claims = _ear(profile)
    sub = claims["submods"]["bytereplay"]  # type: ignore[index]
    assert claims["eat_profile"] == profile and sub[status_key] == "warning"
    ear = read_ear(sign_ear(claims, key), KeySet({"keys": [key.jwk]}))
    assert ear.status == "warning"
    assert ear.vector == {"instance-identity": 2, "hardware": 32}
    assert ear.replay == {"verdict": "match"}
    assert ear.nonce == "bm9uY2Utbm9uY2U"


def test_ear_claiming_better_status_than_its_vector_is_refused() -> None:
    claims = _ear(hardware=99)
    claims["submods"]["bytereplay"]["ear.status"] = "affirming"  # type: ignore[index]
    with pytest.raises(ResultError, match="better than its worst claim"):
        normalise(claims)


def test_ear_signed_by_another_key_is_refused() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(SignatureError):
        read_ear(sign_ear(_ear(), other), KeySet({"keys": [key.jwk]}))


def test_unreachable_key_set_fails_fast_during_cooldown(tmp_path: Path) -> None:
    clock = [0.0]
    keyset = KeySet(tmp_path / "absent.json", cooldown=30.0, clock=lambda: clock[0])
    for _ in range(3):
        with pytest.raises(SignatureError, match="cannot read key set"):
            keyset.keys()
    assert keyset.fetches == 1
    key = SigningKey.generate()
    (tmp_path / "absent.json").write_text(json.dumps({"keys": [key.jwk]}))
    clock[0] = 31.0
    loaded = keyset.keys()
    assert key.kid in loaded
    assert keyset.fetches == 2
