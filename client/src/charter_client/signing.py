"""Ed25519 keys, in-toto Statement v1 and DSSE v1 envelopes, as Charter accepts them.

Self-contained (only ``cryptography``), written from the public specs:

* DSSE v1: the signature is over ``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP
  LEN(body) SP body`` (lengths as ASCII decimals); the envelope is
  ``{"payloadType", "payload": base64(body), "signatures": [{"keyid", "sig": base64}]}``.
* in-toto Statement v1: ``{"_type": "https://in-toto.io/Statement/v1", "subject":
  [{"name", "digest": {"sha256"}}], "predicateType", "predicate"}``.
* Charter's key id: the SHA-256 (hex) of the raw 32-byte Ed25519 public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "KeyLike",
    "PublicKeyLike",
    "SignatureInvalid",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pae",
    "public_pem",
    "sha256_bytes",
    "sha256_file",
    "sign_envelope",
    "sign_statement",
    "statement",
    "verify_envelope",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

#: A private key: the key object, its PEM (bytes or text) or the path of a PEM file.
KeyLike = Ed25519PrivateKey | bytes | str | os.PathLike[str]
#: A public key: the key object, a private key (its public half), PEM, or a PEM file's path.
PublicKeyLike = Ed25519PublicKey | Ed25519PrivateKey | bytes | str | os.PathLike[str]

_CHUNK = 1 << 20


class SignatureInvalid(ValueError):
    """An envelope does not verify with the given key (or is malformed)."""


# ---------------------------------------------------------------- digests


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- keys


def generate_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair: ``(private PEM (PKCS#8, unencrypted), public PEM)``."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_pem(private).encode()


def _pem_bytes(value: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode()
    return Path(value).read_bytes()


def load_private_key(key: KeyLike, password: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from the key itself, PEM, or a PEM file's path."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    loaded = serialization.load_pem_private_key(_pem_bytes(key), password=password)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"expected an Ed25519 private key, got {type(loaded).__name__}")
    return loaded


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """An Ed25519 public key from a public or private key, PEM, or a PEM file's path."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    data = _pem_bytes(key)
    if b"PRIVATE KEY" in data:
        return load_private_key(data).public_key()
    loaded = serialization.load_pem_public_key(data)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError(f"expected an Ed25519 public key, got {type(loaded).__name__}")
    return loaded


def public_pem(key: PublicKeyLike) -> str:
    """The public key as PEM text (SubjectPublicKeyInfo), as Charter's key registry takes it."""
    return (
        load_public_key(key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id(key: PublicKeyLike) -> str:
    """Charter's key id: SHA-256 (hex) of the raw 32-byte Ed25519 public key."""
    raw = load_public_key(key).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- DSSE / in-toto


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


Subject = tuple[str, str] | Mapping[str, Any]


def _subject(item: Subject) -> dict[str, Any]:
    if isinstance(item, Mapping):
        name, digest = item.get("name"), item.get("digest")
        if not isinstance(name, str) or not isinstance(digest, Mapping) or not digest:
            raise ValueError("a subject needs a 'name' and a 'digest' object")
        return {"name": name, "digest": dict(digest)}
    name, sha = item
    sha = sha.lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"subject {name!r}: sha256 must be 64 hex characters")
    return {"name": name, "digest": {"sha256": sha}}


def statement(
    subjects: Iterable[Subject], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 over ``(name, sha256 hex)`` pairs (or full subject objects)."""
    subject = [_subject(s) for s in subjects]
    if not subject:
        raise ValueError("a statement needs at least one subject")
    if not predicate_type:
        raise ValueError("name the predicate type (a URI)")
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def sign_envelope(
    payload: bytes, private_key: KeyLike, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> dict[str, Any]:
    """A DSSE envelope over ``payload`` with one Ed25519 signature (key id: Charter's rule)."""
    key = load_private_key(private_key)
    signature = key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key), "sig": base64.b64encode(signature).decode()}],
    }


def sign_statement(
    subjects: Iterable[Subject],
    predicate_type: str,
    predicate: Mapping[str, Any],
    private_key: KeyLike,
) -> dict[str, Any]:
    """Sign an in-toto Statement v1 over ``subjects``; returns the DSSE envelope (a dict)."""
    stmt = statement(subjects, predicate_type, predicate)
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return sign_envelope(payload, private_key)


def _b64decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureInvalid(f"{what} must be a base64 string")
    text = value.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise SignatureInvalid(f"{what} is not valid base64") from exc


def verify_envelope(
    envelope: Mapping[str, Any] | str,
    public_key: PublicKeyLike,
    *,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> dict[str, Any]:
    """Check a DSSE envelope against one public key; returns the decoded statement.

    Raises :class:`SignatureInvalid` when no signature by that key verifies (e.g. to check
    Charter's signed approvals against ``Client.portal_key()``).
    """
    if isinstance(envelope, str):
        envelope = json.loads(envelope)
    if not isinstance(envelope, Mapping):
        raise SignatureInvalid("the envelope must be a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise SignatureInvalid(f"payloadType is {envelope.get('payloadType')!r}")
    payload = _b64decode(envelope.get("payload"), "payload")
    key = load_public_key(public_key)
    wanted = key_id(key)
    message = pae(payload_type, payload)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SignatureInvalid("the envelope has no signatures")
    for sig in signatures:
        if not isinstance(sig, Mapping):
            continue
        try:
            key.verify(_b64decode(sig.get("sig"), "sig"), message)
        except InvalidSignature:
            continue
        try:
            stmt = json.loads(payload)
        except ValueError as exc:
            raise SignatureInvalid("the payload is not JSON") from exc
        return stmt if isinstance(stmt, dict) else {"payload": stmt}
    raise SignatureInvalid(f"no signature by key {wanted[:16]}… verifies")
