"""CoRIM reference values (draft-ietf-rats-corim) in bytereplay's profile: read strictly, written.

A CoRIM carries the same reference values as the verifier's JSON file
(`verifier/reference.py`); reading one yields that file's document form

    {"model_digests": ["sha-256:<hex>"], "container_digests": ["sha256:<hex>"],
     "runtimes": [{"name", "version"}], "frameworks": [{"name", "version"}]}

(a list only where the CoRIM has such a measurement), so appraisal compares a record
with CoRIM-provisioned values exactly as with the JSON file.

Wire form (integer keys as in the draft's CDDL):

    unsigned   #6.501(corim-map)                        application/rim+cbor
               corim-map {0: id (text, or a 16-byte UUID), 1: [+ #6.506(concise-mid-tag)],
                          5?: entities}
    signed     #6.18([protected, unprotected, payload, signature])   application/rim+cose
               protected {1: alg (ES256 -7, ES384 -35, EdDSA -8),
                          3: "application/rim+cbor", 4?: kid,
                          8: bstr .cbor corim-meta-map {0: {0: signer name, 1?: uri}}
                          and/or 15: CWT claims (iss = the signer name)}
               payload   the unsigned CoRIM's bytes
    CoMID      {0?: language, 1: tag-identity {0: id, 1?: version}, 2?: entities,
                4: triples {0: [+ [environment-map, [+ measurement-map]]]}}
               (#6.506 holds the map itself, as veraison/corim writes it; the older
               `bytes .cbor concise-mid-tag` form is read too)

The mapping (one reference triple per component; every triple's environment is
exactly the class {1 vendor: "bytereplay", 2 model: "llm-inference"}):

    mkey (0)             mval (1)                                 reference value
    "model"              {2 digests: [+ [1, 32 bytes]]}           model_digests "sha-256:<hex>"
    "container"          {2 digests: [+ [1, 32 bytes]]}           container_digests "sha256:<hex>"
    "runtime"            {0 version: {0: text}, 11? name: text}   runtimes (name, default "bytereplay")
    "framework/<name>"   {0 version: {0: text}}                   frameworks (torch, transformers,
                                                                  python, gguf)

Digest algorithms are named-information ids; only sha-256 (1, or the text "sha-256")
is read. Several measurement maps (or several digests) for one key allow each value.

Strict reading: the input must be core deterministic CBOR (as veraison/corim writes
it) of at most `MAX_CORIM_BYTES`; a wrong tag, a truncated item, a wrong type, an
unknown key in any map this reader interprets, a known key whose meaning it does not
implement (dependent-rims, profile, validity, linked-tags, triples other than
reference triples, authorized-by), another environment, an unknown measurement key or
a COSE `crit` header is a `CorimError` naming the path of the item. A signed CoRIM is
verified against keys the caller configures, never against a key in the message
(`SignatureError` when none verifies). Other protected or unprotected COSE labels are
not critical (RFC 9052) and are ignored.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from bytereplay import cose
from bytereplay.encoding import HASH_PREFIX, HASH_RE, OCI_DIGEST_RE, cbor_dumps, cbor_loads, is_int
from bytereplay.errors import CorimError, EncodingError, SignatureError, UsageError
from bytereplay.keys import PublicKey, SigningKey, alg_for_key
from bytereplay.record import Framework

MEDIA_CORIM = "application/rim+cbor"
MEDIA_SIGNED_CORIM = "application/rim+cose"
TAG_CORIM = 501
TAG_COMID = 506
TAG_COSE_SIGN1 = cose.COSE_SIGN1_TAG
MAX_CORIM_BYTES = 1 << 20

VENDOR = "bytereplay"
CLASS_MODEL = "llm-inference"
MKEY_MODEL, MKEY_CONTAINER, MKEY_RUNTIME, FRAMEWORK_PREFIX = (
    "model", "container", "runtime", "framework/")
FRAMEWORKS = tuple(f.name for f in dataclasses.fields(Framework))
DEFAULT_RUNTIME = "bytereplay"
NI_SHA256 = 1  # named-information hash algorithm id (RFC 6920 registry)
SIGNING_ALGS = ("ES256", "ES384", "EdDSA")
MAX_TEXT = 256

# corim-map / concise-mid-tag / triples-map / measurement-map keys: read, or known but
# not implemented (refused by name: ignoring them could change what the values mean).
_CORIM_KEYS = {0: "id", 1: "tags", 5: "entities"}
_CORIM_UNSUPPORTED = {2: "dependent-rims", 3: "profile", 4: "rim-validity"}
_COMID_KEYS = {0: "language", 1: "tag-identity", 2: "entities", 4: "triples"}
_COMID_UNSUPPORTED = {3: "linked-tags", 5: "profile"}
_TRIPLES_UNSUPPORTED = {1: "endorsed-triples", 2: "identity-triples", 3: "attest-key-triples",
                        4: "dependency-triples", 5: "membership-triples", 6: "coswid-triples",
                        7: "conditional-endorsement-series-triples",
                        8: "conditional-endorsement-triples"}
_TAG_NAMES = {505: "CoSWID", 508: "CoTL"}
H_CORIM_META, H_CWT_CLAIMS = 8, 15
_SIGN_ALG_IDS = {name: cose.COSE_ALG_IDS[name] for name in SIGNING_ALGS}
_SIGN_ALG_NAMES = {v: k for k, v in _SIGN_ALG_IDS.items()}


@dataclass(frozen=True)
class Corim:
    """A CoRIM read in bytereplay's profile: its id, its reference values (the JSON
    file's document form), and for a signed one the signer named in its header and
    whether the signature was verified (only `read` with keys verifies)."""

    id: str
    values: dict[str, Any]
    signed: bool = False
    signer: str | None = None
    verified: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "signed": self.signed}
        if self.signed:
            out["signer"] = self.signer
            out["verified"] = self.verified
        out["reference_values"] = self.values
        return out


def _fail(path: str, message: str) -> CorimError:
    return CorimError(f"{path}: {message}")


def _loads(data: Any, path: str) -> Any:
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise _fail(path, "expected non-empty CBOR bytes")
    try:
        return cbor_loads(bytes(data), max_bytes=MAX_CORIM_BYTES, allow_tags=True)
    except EncodingError as exc:
        raise _fail(path, exc.detail) from None


def _tagged(value: Any, tag: int, path: str, what: str) -> Any:
    if not isinstance(value, cbor2.CBORTag):
        raise _fail(path, f"expected tag {tag} ({what}), got an untagged {_kind(value)}")
    if value.tag != tag:
        name = _TAG_NAMES.get(value.tag)
        extra = f" ({name}: not read by bytereplay)" if name else ""
        raise _fail(path, f"expected tag {tag} ({what}), got tag {value.tag}{extra}")
    return value.value


def _kind(value: Any) -> str:
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag}"
    return {dict: "map", list: "array", str: "text", bytes: "byte string", bool: "boolean",
            int: "integer", float: "float", type(None): "null"}.get(type(value), type(value).__name__)


def _map(value: Any, path: str, known: Mapping[int, str],
         unsupported: Mapping[int, str] | None = None) -> dict[int, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected a map, got {_kind(value)}")
    for key in value:
        if not is_int(key):
            raise _fail(path, f"key {key!r}: keys are integers")
        if unsupported and key in unsupported:
            raise _fail(path, f"{unsupported[key]} ({key}) is not supported by this verifier")
        if key not in known:
            raise _fail(path, f"unknown key {key}: not understood, so refused")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected an array, got {_kind(value)}")
    if not value:
        raise _fail(path, "expected a non-empty array")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected text, got {_kind(value)}")
    if not value or len(value) > MAX_TEXT:
        raise _fail(path, f"text of 1..{MAX_TEXT} characters expected")
    return value


def _identifier(value: Any, path: str) -> str:
    """A tag or CoRIM id: text, or a 16-byte UUID (shown in its canonical text form)."""
    if isinstance(value, bytes):
        if len(value) != 16:
            raise _fail(path, "a byte-string id is a 16-byte UUID")
        return str(uuid.UUID(bytes=value))
    return _text(value, path)


def _entities(value: Any, path: str) -> None:
    for i, entity in enumerate(_list(value, path)):
        if not isinstance(entity, dict) or not isinstance(entity.get(0), str):
            raise _fail(f"{path}[{i}]", "an entity is a map with its name (0) as text")


class _Values:
    def __init__(self) -> None:
        self.model: set[str] = set()
        self.container: set[str] = set()
        self.runtimes: set[tuple[str, str]] = set()
        self.frameworks: set[tuple[str, str]] = set()

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.model:
            doc["model_digests"] = sorted(self.model)
        if self.container:
            doc["container_digests"] = sorted(self.container)
        if self.runtimes:
            doc["runtimes"] = [{"name": n, "version": v} for n, v in sorted(self.runtimes)]
        if self.frameworks:
            doc["frameworks"] = [{"name": n, "version": v} for n, v in sorted(self.frameworks)]
        return doc


def _digests(mval: dict[int, Any], path: str) -> list[bytes]:
    _map(mval, path, {2: "digests"})
    if 2 not in mval:
        raise _fail(path, "digests (2) required")
    out = []
    for i, digest in enumerate(_list(mval[2], f"{path}.digests")):
        where = f"{path}.digests[{i}]"
        if not isinstance(digest, list) or len(digest) != 2:
            raise _fail(where, "a digest is [alg, bytes]")
        alg, value = digest
        if not ((is_int(alg) and alg == NI_SHA256) or alg == "sha-256"):
            raise _fail(where, f"digest algorithm {alg!r} is not supported; "
                               f"only sha-256 ({NI_SHA256})")
        if not isinstance(value, bytes) or len(value) != 32:
            raise _fail(where, "a sha-256 digest is 32 bytes")
        out.append(value)
    return out


def _version(mval: dict[int, Any], path: str, named: bool) -> tuple[str, str | None]:
    _map(mval, path, {0: "version", 11: "name"} if named else {0: "version"})
    if 0 not in mval:
        raise _fail(path, "version (0) required")
    vmap = _map(mval[0], f"{path}.version", {0: "version", 1: "version-scheme"})
    if 0 not in vmap:
        raise _fail(f"{path}.version", "version (0) required")
    version = _text(vmap[0], f"{path}.version.version")
    scheme = vmap.get(1)
    if scheme is not None and not (is_int(scheme) or isinstance(scheme, str)):
        raise _fail(f"{path}.version.version-scheme", "an integer or text")
    name = _text(mval[11], f"{path}.name") if 11 in mval else None
    return version, name


def _measurement(value: Any, path: str, out: _Values) -> None:
    m = _map(value, path, {0: "mkey", 1: "mval"}, {2: "authorized-by"})
    if 0 not in m or 1 not in m:
        raise _fail(path, "mkey (0) and mval (1) required")
    mkey = m[0]
    if not isinstance(mkey, str):
        raise _fail(f"{path}.mkey", f"expected text, got {_kind(mkey)}")
    mval, where = m[1], f"{path}.mval"
    if mkey == MKEY_MODEL:
        out.model.update(HASH_PREFIX + d.hex() for d in _digests(mval, where))
    elif mkey == MKEY_CONTAINER:
        out.container.update("sha256:" + d.hex() for d in _digests(mval, where))
    elif mkey == MKEY_RUNTIME:
        version, name = _version(mval, where, named=True)
        out.runtimes.add((name or DEFAULT_RUNTIME, version))
    elif mkey.startswith(FRAMEWORK_PREFIX) and mkey[len(FRAMEWORK_PREFIX):] in FRAMEWORKS:
        version, _ = _version(mval, where, named=False)
        out.frameworks.add((mkey[len(FRAMEWORK_PREFIX):], version))
    else:
        raise _fail(f"{path}.mkey", f"unknown measurement key {mkey[:64]!r}; known: "
                                    f"{[MKEY_MODEL, MKEY_CONTAINER, MKEY_RUNTIME]} and "
                                    f"{[FRAMEWORK_PREFIX + f for f in FRAMEWORKS]}")


def _environment(value: Any, path: str) -> None:
    env = _map(value, path, {0: "class"}, {1: "instance", 2: "group"})
    if 0 not in env:
        raise _fail(path, "class (0) required")
    cls = _map(env[0], f"{path}.class", {1: "vendor", 2: "model"},
               {0: "class-id", 3: "layer", 4: "index"})
    if cls.get(1) != VENDOR or cls.get(2) != CLASS_MODEL:
        raise _fail(f"{path}.class", f"not bytereplay's environment: expected "
                                     f"{{vendor: {VENDOR!r}, model: {CLASS_MODEL!r}}}")


def _comid(value: Any, path: str, out: _Values) -> None:
    if isinstance(value, bytes):  # the older `bytes .cbor concise-mid-tag` form
        value = _loads(value, path)
    comid = _map(value, path, _COMID_KEYS, _COMID_UNSUPPORTED)
    if 1 not in comid or 4 not in comid:
        raise _fail(path, "tag-identity (1) and triples (4) required")
    if 0 in comid:
        _text(comid[0], f"{path}.language")
    ident = _map(comid[1], f"{path}.tag-identity", {0: "tag-id", 1: "tag-version"})
    if 0 not in ident:
        raise _fail(f"{path}.tag-identity", "tag-id (0) required")
    _identifier(ident[0], f"{path}.tag-identity.tag-id")
    if 1 in ident and (not is_int(ident[1]) or ident[1] < 0):
        raise _fail(f"{path}.tag-identity.tag-version", "an unsigned integer")
    if 2 in comid:
        _entities(comid[2], f"{path}.entities")
    triples = _map(comid[4], f"{path}.triples", {0: "reference-triples"}, _TRIPLES_UNSUPPORTED)
    if 0 not in triples:
        raise _fail(f"{path}.triples", "reference-triples (0) required")
    for i, triple in enumerate(_list(triples[0], f"{path}.triples.reference-triples")):
        where = f"{path}.triples.reference-triples[{i}]"
        if not isinstance(triple, list) or len(triple) != 2:
            raise _fail(where, "a reference triple is [environment-map, [+ measurement-map]]")
        _environment(triple[0], f"{where}.environment")
        for j, m in enumerate(_list(triple[1], f"{where}.measurements")):
            _measurement(m, f"{where}.measurements[{j}]", out)


def _unsigned(value: Any, path: str) -> Corim:
    body = _map(_tagged(value, TAG_CORIM, path, "unsigned-corim-map"), path, _CORIM_KEYS,
                _CORIM_UNSUPPORTED)
    if 0 not in body or 1 not in body:
        raise _fail(path, "id (0) and tags (1) required")
    corim_id = _identifier(body[0], f"{path}.id")
    if 5 in body:
        _entities(body[5], f"{path}.entities")
    out = _Values()
    for i, tag in enumerate(_list(body[1], f"{path}.tags")):
        where = f"{path}.tags[{i}]"
        _comid(_tagged(tag, TAG_COMID, where, "concise-mid-tag"), where, out)
    return Corim(id=corim_id, values=out.document())


@dataclass(frozen=True)
class _Envelope:
    alg: str
    protected: bytes
    payload: bytes
    signature: bytes
    signer: str | None


def _signer(header: dict[Any, Any], path: str) -> str | None:
    signer: str | None = None
    if H_CORIM_META in header:
        meta = _map(_loads(header[H_CORIM_META], f"{path}.corim-meta"), f"{path}.corim-meta",
                    {0: "signer"}, {1: "signature-validity"})
        if 0 not in meta:
            raise _fail(f"{path}.corim-meta", "signer (0) required")
        who = _map(meta[0], f"{path}.corim-meta.signer", {0: "signer-name", 1: "signer-uri"})
        if 0 not in who:
            raise _fail(f"{path}.corim-meta.signer", "signer-name (0) required")
        signer = _text(who[0], f"{path}.corim-meta.signer.signer-name")
        if 1 in who:
            _text(who[1], f"{path}.corim-meta.signer.signer-uri")
    if H_CWT_CLAIMS in header:
        claims = header[H_CWT_CLAIMS]
        if not isinstance(claims, dict):
            raise _fail(f"{path}.CWT-Claims", f"expected a map, got {_kind(claims)}")
        for label, name in ((4, "exp"), (5, "nbf")):
            if label in claims:
                raise _fail(f"{path}.CWT-Claims", f"{name} ({label}) is not supported by "
                                                  "this verifier (no validity periods)")
        if 1 in claims and signer is None:
            signer = _text(claims[1], f"{path}.CWT-Claims.iss")
    return signer


def _envelope(value: Any, path: str) -> _Envelope:
    parts = _tagged(value, TAG_COSE_SIGN1, path, "COSE_Sign1")
    if not isinstance(parts, list) or len(parts) != 4:
        raise _fail(path, "COSE_Sign1 is [protected, unprotected, payload, signature]")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not protected:
        raise _fail(f"{path}.protected", "a non-empty byte string")
    header = _loads(protected, f"{path}.protected")
    if not isinstance(header, dict):
        raise _fail(f"{path}.protected", f"expected a map, got {_kind(header)}")
    if cose.H_CRIT in header:
        raise _fail(f"{path}.protected", "crit (2) names headers this reader does not "
                                         "implement: refused")
    alg_id = header.get(cose.H_ALG)
    if not is_int(alg_id) or alg_id not in _SIGN_ALG_NAMES:
        raise SignatureError(f"{path}.protected: COSE algorithm {alg_id!r} is not allowed; "
                             f"allowed: {list(SIGNING_ALGS)}")
    if header.get(cose.H_CTY) != MEDIA_CORIM:
        raise _fail(f"{path}.protected", f"content-type (3) must be {MEDIA_CORIM!r}")
    if cose.H_KID in header and not isinstance(header[cose.H_KID], bytes):
        raise _fail(f"{path}.protected.kid", "a byte string")
    if H_CORIM_META not in header and H_CWT_CLAIMS not in header:
        raise _fail(f"{path}.protected", "corim-meta (8) or CWT-Claims (15) required")
    signer = _signer(header, f"{path}.protected")
    if not isinstance(unprotected, dict):
        raise _fail(f"{path}.unprotected", f"expected a map, got {_kind(unprotected)}")
    if cose.H_CRIT in unprotected:
        raise _fail(f"{path}.unprotected", "crit (2) belongs in the protected header")
    if payload is None:
        raise _fail(f"{path}.payload", "a detached payload is not supported")
    if not isinstance(payload, bytes) or not payload:
        raise _fail(f"{path}.payload", "the unsigned CoRIM's bytes")
    if not isinstance(signature, bytes) or not signature:
        raise _fail(f"{path}.signature", "a non-empty byte string")
    return _Envelope(_SIGN_ALG_NAMES[alg_id], protected, payload, signature, signer)


def _verify(env: _Envelope, keys: Sequence[PublicKey]) -> None:
    candidates = [k for k in keys if alg_for_key(k) == env.alg]
    if not keys:
        raise SignatureError("a signed CoRIM needs a configured provisioning key; none is")
    data = cose.sig_structure(env.protected, env.payload)
    for key in candidates:
        try:
            cose.verify(key, env.alg, env.signature, data)
            return
        except SignatureError:
            continue
    raise SignatureError(f"the CoRIM's {env.alg} signature does not verify with any "
                         "configured provisioning key")


def read(data: bytes, keys: Sequence[PublicKey] | None = None, *,
         media_type: str | None = None) -> Corim:
    """Read a CoRIM strictly. A signed one is verified against `keys` (the configured
    provisioning keys; none -> SignatureError); `media_type`, when given, must agree
    with the form (rim+cbor: unsigned, rim+cose: signed)."""
    value = _loads(data, "corim")
    signed = isinstance(value, cbor2.CBORTag) and value.tag == TAG_COSE_SIGN1
    if media_type == MEDIA_CORIM and signed:
        raise _fail("corim", f"a signed CoRIM (tag 18) is sent as {MEDIA_SIGNED_CORIM}")
    if media_type == MEDIA_SIGNED_CORIM and not signed:
        raise _fail("corim", f"{MEDIA_SIGNED_CORIM} is a COSE_Sign1 (tag 18)")
    if not signed:
        return _unsigned(value, "corim")
    env = _envelope(value, "corim")
    _verify(env, keys or ())
    inner = _unsigned(_loads(env.payload, "corim.payload"), "corim.payload")
    return dataclasses.replace(inner, signed=True, signer=env.signer, verified=True)


def inspect(data: bytes) -> Corim:
    """Read a CoRIM as strictly as `read`, without checking a signature (`verified` is
    False): for showing one, never for trusting it."""
    value = _loads(data, "corim")
    if not (isinstance(value, cbor2.CBORTag) and value.tag == TAG_COSE_SIGN1):
        return _unsigned(value, "corim")
    env = _envelope(value, "corim")
    inner = _unsigned(_loads(env.payload, "corim.payload"), "corim.payload")
    return dataclasses.replace(inner, signed=True, signer=env.signer, verified=False)


# -- writing -------------------------------------------------------------------------


def _pairs(doc: Mapping[str, Any], key: str) -> Iterable[tuple[str, str]]:
    items = doc.get(key) or []
    for item in items:
        if not isinstance(item, Mapping) or set(item) != {"name", "version"} or \
                not all(isinstance(item[k], str) and item[k] for k in ("name", "version")):
            raise UsageError(f"{key}: a list of {{\"name\", \"version\"}} objects")
        yield item["name"], item["version"]


def _measurements(doc: Mapping[str, Any]) -> list[tuple[str, list[dict[int, Any]]]]:
    """(component, measurement maps) per component present in `doc`, in mapping order."""
    out: list[tuple[str, list[dict[int, Any]]]] = []
    for key, mkey, pattern, prefix in (("model_digests", MKEY_MODEL, HASH_RE, HASH_PREFIX),
                                       ("container_digests", MKEY_CONTAINER, OCI_DIGEST_RE,
                                        "sha256:")):
        digests = doc.get(key) or []
        if not all(isinstance(d, str) and pattern.match(d) for d in digests):
            raise UsageError(f"{key}: digests of the form {prefix}<64 hex>")
        if digests:
            out.append((mkey, [{0: mkey, 1: {2: [[NI_SHA256, bytes.fromhex(d[len(prefix):])]]}}
                               for d in sorted(set(digests))]))
    runtimes = sorted(set(_pairs(doc, "runtimes")))
    if runtimes:
        out.append((MKEY_RUNTIME, [
            {0: MKEY_RUNTIME, 1: {0: {0: v}, **({} if n == DEFAULT_RUNTIME else {11: n})}}
            for n, v in runtimes]))
    frameworks: dict[str, list[str]] = {}
    for name, version in sorted(set(_pairs(doc, "frameworks"))):
        if name not in FRAMEWORKS:
            raise UsageError(f"frameworks: {name!r} is not one of {list(FRAMEWORKS)}")
        frameworks.setdefault(name, []).append(version)
    for name, versions in frameworks.items():
        mkey = FRAMEWORK_PREFIX + name
        out.append((mkey, [{0: mkey, 1: {0: {0: v}}} for v in versions]))
    return out


def encode(doc: Mapping[str, Any], corim_id: str) -> bytes:
    """An unsigned CoRIM (tag 501, one CoMID) for reference values in the JSON file's
    document form: one reference triple per component."""
    if not isinstance(corim_id, str) or not 0 < len(corim_id) <= MAX_TEXT:
        raise UsageError(f"a CoRIM id is text of 1..{MAX_TEXT} characters")
    env = {0: {1: VENDOR, 2: CLASS_MODEL}}
    triples = [[env, maps] for _, maps in _measurements(doc)]
    if not triples:
        raise UsageError("no reference values to write")
    comid = {1: {0: corim_id}, 4: {0: triples}}
    return cbor_dumps(cbor2.CBORTag(TAG_CORIM, {0: corim_id, 1: [cbor2.CBORTag(TAG_COMID, comid)]}))


def sign(unsigned: bytes, key: SigningKey, signer: str) -> bytes:
    """The signed CoRIM (tag-18 COSE_Sign1) of an unsigned CoRIM's bytes."""
    if key.alg not in SIGNING_ALGS:
        raise UsageError(f"a CoRIM is signed with {list(SIGNING_ALGS)}, not {key.alg}")
    _unsigned(_loads(unsigned, "corim"), "corim")  # sign only what reads back
    if not isinstance(signer, str) or not 0 < len(signer) <= MAX_TEXT:
        raise UsageError(f"a signer name is text of 1..{MAX_TEXT} characters")
    meta = cbor_dumps({0: {0: signer}})
    protected = cbor_dumps({cose.H_ALG: _SIGN_ALG_IDS[key.alg], cose.H_CTY: MEDIA_CORIM,
                            cose.H_KID: key.kid.encode("ascii"), H_CORIM_META: meta})
    signature = cose.sign(key, cose.sig_structure(protected, unsigned))
    return cbor_dumps(cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {}, unsigned, signature]))
