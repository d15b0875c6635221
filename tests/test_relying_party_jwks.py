"""The verifier key set served over HTTP (loopback): fetched, cached, refetched once on an
unknown kid, with a cooldown against floods of unknown kids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jwks_server import JwksServer

from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from relying_party import evaluate
from relying_party.testing import jwks_of, make_result

OUT = b"served bytes"


@pytest.fixture()
def served() -> Iterator[JwksServer]:
    srv = JwksServer("/.well-known/jwks.json")
    yield srv
    srv.close()


def test_url_key_set_verifies_and_is_cached(served: JwksServer) -> None:
    key = SigningKey.generate()
    served.doc = jwks_of(key)
    token = make_result(key, output=OUT)
    assert evaluate(token, output=OUT, verifier_keys=served.url).allow
    assert evaluate(token, output=OUT, verifier_keys=served.url).allow
    assert served.hits == 1  # the second call used the cached key set (TTL)


def test_unknown_kid_refetches_once_then_cools_down(served: JwksServer) -> None:
    old, new, rogue = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    served.doc = jwks_of(old)
    now = [1000.0]
    keys = KeySet(served.url, ttl=300, cooldown=30, clock=lambda: now[0])
    assert evaluate(make_result(old, output=OUT), output=OUT, verifier_keys=keys).allow
    assert served.hits == 1

    # The verifier rotates to a new key: the first result under it triggers one refetch.
    served.doc = jwks_of(old, new)
    d = evaluate(make_result(new, output=OUT), output=OUT, verifier_keys=keys)
    assert d.allow, d.reasons
    assert served.hits == 2

    # A flood of unknown kids inside the cooldown does not hammer the server.
    for _ in range(5):
        d = evaluate(make_result(rogue, output=OUT), output=OUT, verifier_keys=keys)
        assert not d.allow and "unknown key id" in d.reasons[0]
    assert served.hits == 2

    # After the cooldown, one more refetch is allowed; the rogue key is still unknown.
    now[0] += 31
    assert not evaluate(make_result(rogue, output=OUT), output=OUT, verifier_keys=keys).allow
    assert served.hits == 3


def test_unreachable_key_set_denies_without_raising() -> None:
    key = SigningKey.generate()
    d = evaluate(make_result(key, output=OUT), output=OUT,
                 verifier_keys="http://127.0.0.1:9/.well-known/jwks.json")
    assert not d.allow and "cannot fetch key set" in d.reasons[0]
