"""Signing keys shared by replicas and rotated (`bytereplay.keyring`, `bytereplay keys`).

- a key file shared by two homes (a mounted secret) gives both verifiers the same kid;
  a configured key file is never invented, and one readable by others is refused;
- `rotate` adds a current key; the published set keeps the old key until its retirement
  time, given as an input, never waited for; a later rotation forgets retired keys;
- a `KeyRing` picks a rotation up when its files change (the re-check clock is an input);
- over HTTP, with the verifier's clock an input: an EAR signed before `keys rotate` and
  one signed after both verify for a relying party pinned to the JWKS URL (refetch on
  the unknown kid), and the old key leaves the JWKS once its retirement time has passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bytereplay.errors import KeyConfigError
from bytereplay.home import Home
from bytereplay.jwks import KeySet
from bytereplay.keyring import KeyRing, load_ring, manifest_path, parse_time, rotate
from bytereplay.keys import SigningKey, load_or_create_key, write_private_key
from verifier import config as config_mod
from verifier.pipeline import Verifier

REPO = Path(__file__).resolve().parent.parent
T0 = parse_time("2030-01-01T00:00:00Z", "T0")
DAY = 86400.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bytereplay.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_key_file_shared_by_two_homes_gives_the_same_kid(tmp_path: Path) -> None:
    secret = tmp_path / "secret" / "ear.pem"
    secret.parent.mkdir()
    write_private_key(secret, SigningKey.generate().private)
    config = tmp_path / "verifier.json"
    config.write_text(json.dumps({"verifier": {"ear_key": str(secret), "replay": False}}))
    kids = []
    for name in ("a", "b"):
        home = Home.resolve(tmp_path / name)
        v = Verifier(config_mod.load(home, config))
        try:
            kids.append(v.key.kid)
            assert [k["kid"] for k in v.jwks()["keys"]] == [v.key.kid]
        finally:
            v.close()
        assert not home.verifier_key.exists()  # the home's own key is not made
    assert kids[0] == kids[1] == load_or_create_key(secret).kid


def test_a_configured_key_is_never_invented(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        KeyRing(tmp_path / "missing.pem")
    assert not (tmp_path / "missing.pem").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "ear.pem"
    write_private_key(key, SigningKey.generate().private)
    assert (key.stat().st_mode & 0o777) == 0o600
    os.chmod(key, mode)
    with pytest.raises(KeyConfigError, match=f"readable by others \\(mode {mode:04o}\\).*chmod 600"):
        KeyRing(key)
    # A rotated ring checks every key file it lists, not only the first.
    os.chmod(key, 0o600)
    done = rotate(key, at=T0)
    os.chmod(key.with_name(done.current.file), mode)
    with pytest.raises(KeyConfigError, match="readable by others"):
        KeyRing(key)


def test_serve_refuses_a_loose_key_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "ear.pem"
    write_private_key(key, SigningKey.generate().private)
    os.chmod(key, 0o644)
    config = tmp_path / "v.json"
    config.write_text(json.dumps({"verifier": {"ear_key": str(key), "replay": False}}))
    for workers in ("1", "2"):
        r = _cli("serve", "verifier", "--port", "0", "--home", str(tmp_path / "h"),
                 "--config", str(config), "--workers", workers)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"bytereplay: error: signing key file {key} is readable by others (mode 0644); "
            f"refused: expected 0600 (chmod 600 {key})"]
        assert "PRIVATE KEY" not in r.stderr


def test_rotation_publishes_old_keys_until_they_retire(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "verifier-ear.pem"
    first = rotate(key, at=T0)
    assert first.created and (key.stat().st_mode & 0o777) == 0o600
    old = first.current.key
    second = rotate(key, at=T0 + 10, retire_after=DAY)
    new = second.current.key
    assert new.kid != old.kid
    assert [k.key.kid for k in second.retiring] == [old.kid]
    assert (key.with_name(second.current.file).stat().st_mode & 0o777) == 0o600
    assert (manifest_path(key).stat().st_mode & 0o777) == 0o600
    ring = KeyRing(key)
    assert ring.current.kid == new.kid  # new signatures use the new key
    assert [k.kid for k in ring.published(T0 + 11)] == [new.kid, old.kid]
    assert [k.kid for k in ring.published(T0 + 10 + DAY - 1)] == [new.kid, old.kid]
    assert [k.kid for k in ring.published(T0 + 10 + DAY)] == [new.kid]  # retired
    assert [k["kid"] for k in ring.jwks(T0 + 10 + DAY + 1)["keys"]] == [new.kid]
    # A rotation after the old key retired forgets it, and deletes its file.
    third = rotate(key, at=T0 + 2 * DAY, retire_after=60)
    assert third.forgotten == (old.kid,) and not key.exists()
    kids = [k.key.kid for k in load_ring(key)]
    assert kids == [new.kid, third.current.key.kid]


def test_a_ring_with_a_wrong_kid_or_retiring_current_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "ear.pem"
    rotate(key, at=T0)
    rotate(key, at=T0 + 1)
    doc = json.loads(manifest_path(key).read_text())
    doc["keys"][0]["kid"] = "not-the-thumbprint"
    manifest_path(key).write_text(json.dumps(doc))
    with pytest.raises(KeyConfigError, match="not the key's thumbprint"):
        load_ring(key)
    doc = json.loads(manifest_path(key).read_text())
    doc["keys"][0]["kid"] = load_or_create_key(key).kid
    doc["keys"][-1]["retire_at"] = "2030-01-01T00:00:00Z"
    manifest_path(key).write_text(json.dumps(doc))
    with pytest.raises(KeyConfigError, match="current"):
        load_ring(key)


def test_every_reader_picks_up_a_rotation(tmp_path: Path) -> None:
    key = tmp_path / "ear.pem"
    rotate(key, at=T0)
    ticks = [0.0]
    readers = [KeyRing(key, monotonic=lambda: ticks[0], recheck_s=1.0) for _ in range(2)]
    before = readers[0].current.kid
    done = rotate(key, at=T0 + 5)
    assert readers[0].current.kid == before  # within the re-check interval: no stat yet
    ticks[0] = 1.5
    assert [r.current.kid for r in readers] == [done.current.key.kid] * 2
    assert all(r.reloads == 1 for r in readers)
    ticks[0] = 3.0
    readers[0].current  # noqa: B018 - nothing changed: no reload
    assert readers[0].reloads == 1
    # A broken ring at a re-check keeps the keys it had.
    manifest_path(key).write_text("{not json")
    ticks[0] = 5.0
    assert readers[1].current.kid == done.current.key.kid


def test_keys_cli_rotate_and_list(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = _cli("keys", "rotate", "--home", str(home), "--json", "--at", "2030-01-01T00:00:00Z")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["created"] is True
    r = _cli("keys", "rotate", "--home", str(home), "--json", "--retire-after", "3600",
             "--at", "2030-01-01T00:00:00Z")
    second = json.loads(r.stdout)
    assert second["retiring"] == [{"kid": first["current"], "retire_at": "2030-01-01T01:00:00Z"}]
    r = _cli("keys", "list", "--home", str(home), "--at", "2030-01-01T02:00:00Z", "--json")
    rows = {k["kid"]: k for k in json.loads(r.stdout)["keys"]}
    assert rows[first["current"]]["state"] == "retired"
    assert rows[second["current"]]["state"] == "current"
    assert "PRIVATE" not in r.stdout
    r = _cli("keys", "rotate", "--home", str(home), "--role", "attester")
    assert r.returncode == 0 and "attester key ring" in r.stdout
    assert (Home.resolve(home).attester_key.stat().st_mode & 0o777) == 0o600
    r = _cli("keys", "rotate", "--home", str(home), "--at", "yesterday")
    assert r.returncode == 2 and "RFC 3339" in r.stderr


def test_attester_signs_with_the_rotated_evidence_key(tmp_path: Path) -> None:
    from attester.config import AttesterConfig
    from attester.service import Attester

    home = Home.resolve(tmp_path / "home")
    shared = tmp_path / "secret" / "evidence.pem"
    rotate(shared, at=T0)
    config = AttesterConfig(evidence_key=str(shared))
    attester = Attester(config, home)
    old = attester.key.kid
    assert old == load_or_create_key(shared).kid and not home.attester_key.exists()
    rotate(shared, at=time.time(), retire_after=DAY)
    assert attester.keys is not None
    attester.keys.refresh(force=True)
    assert attester.key.kid != old
    assert [k["kid"] for k in attester.published_keys()] == [attester.key.kid, old]


# -- over HTTP: rotation seen by a relying party pinned to the JWKS URL ------------------


@pytest.fixture
def shifted_verifier(tmp_path: Path) -> Iterator[tuple[str, Verifier, list[float], Home]]:
    """A verifier on a loopback port whose clock is real time plus `offset[0]`."""
    import uvicorn

    from bytereplay.web.serving import bind
    from verifier.service import create_app

    home = Home.resolve(tmp_path / "home")
    offset = [0.0]
    cfg = config_mod.load(home).replace(replay=False)
    v = Verifier(cfg, clock=lambda: time.time() + offset[0])
    v.keys.recheck_s = 0.0  # the test rotates and looks at once
    sockets = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, verifier=v), log_config=None,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", v, offset, home
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_relying_party_pinned_to_the_jwks_url_follows_a_rotation(
        shifted_verifier: tuple[str, Verifier, list[float], Home]) -> None:
    import httpx

    sys.path.insert(0, str(REPO / "fuzz"))
    import kit

    from relying_party import evaluate

    url, _v, offset, home = shifted_verifier
    ek = kit.EvidenceKit(home)

    def ear() -> tuple[str, bytes]:
        challenge = httpx.post(f"{url}/v1/challenge").json()
        evidence = ek.make_for(challenge)
        r = httpx.post(f"{url}/v1/verify?replay=false", content=evidence,
                       headers={"content-type": "application/eat+jwt"})
        assert r.status_code == 200, r.text
        return r.json()["result"], ek.record.output_hash.encode()

    def kid_of(token: str) -> str:
        from bytereplay.jose import parse_unverified

        return str(parse_unverified(token)[0]["kid"])

    jwks_url = f"{url}/.well-known/jwks.json"
    pinned = KeySet(jwks_url, cooldown=0.0)  # one relying party, pinned to the URL
    before, _ = ear()
    assert evaluate(before, output=b"", verifier_keys=pinned).checks["signature"]["ok"]
    fetches = pinned.fetches

    r = _cli("keys", "rotate", "--home", str(home.root), "--retire-after", "600", "--json")
    assert r.returncode == 0, r.stderr
    new_kid = json.loads(r.stdout)["current"]
    after, _ = ear()
    assert kid_of(after) == new_kid != kid_of(before)
    for token in (before, after):
        d = evaluate(token, output=b"", verifier_keys=pinned)
        assert d.checks["signature"]["ok"], d.reasons
    assert pinned.fetches == fetches + 1  # the unknown kid made it refetch, once
    assert {k["kid"] for k in httpx.get(jwks_url).json()["keys"]} == {kid_of(before), new_kid}

    offset[0] = 601.0  # past the old key's retirement time
    assert [k["kid"] for k in httpx.get(jwks_url).json()["keys"]] == [new_kid]
    fresh = KeySet(jwks_url)
    d = evaluate(before, output=b"", verifier_keys=fresh)
    assert not d.checks["signature"]["ok"]
    assert evaluate(after, output=b"", verifier_keys=fresh).checks["signature"]["ok"]
