"""DSSE envelopes carrying in-toto Statement v1, signed with Ed25519.

Formats follow the public specs: DSSE v1 (PAE = "DSSEv1" SP LEN(type) SP type
SP LEN(body) SP body, lengths as ASCII decimals) and in-toto Statement v1.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class EnvelopeError(ValueError):
    """An envelope or statement is malformed or does not verify."""


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement(
    subjects: list[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 over (name, sha256 hex) subjects."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha}} for name, sha in subjects],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_envelope(
    payload: bytes,
    keyid: str,
    sign: Callable[[bytes], bytes],
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> dict[str, Any]:
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {"keyid": keyid, "sig": base64.b64encode(sign(pae(payload_type, payload))).decode()}
        ],
    }


def sign_statement(
    stmt: dict[str, Any], keyid: str, sign: Callable[[bytes], bytes]
) -> dict[str, Any]:
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    return sign_envelope(payload, keyid, sign)


@dataclass(frozen=True)
class VerifiedEnvelope:
    keyid: str
    payload: bytes
    statement: dict[str, Any] | None


def _b64(value: Any, what: str) -> bytes:
    """Decode base64; DSSE allows standard or URL-safe alphabets, padded or not."""
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} must be a base64 string")
    text = value.strip()
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    if text.rstrip("=") != text:
        text = text.rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"{what} is not valid base64") from exc


def parse_envelope(envelope: Any) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope must be a JSON object")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise EnvelopeError("envelope.payloadType is missing")
    payload = _b64(envelope.get("payload"), "envelope.payload")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise EnvelopeError("envelope.signatures must be a non-empty list")
    out = []
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict):
            raise EnvelopeError(f"envelope.signatures[{i}] must be an object")
        keyid = sig.get("keyid") or ""
        if not isinstance(keyid, str):
            raise EnvelopeError(f"envelope.signatures[{i}].keyid must be a string")
        raw = _b64(sig.get("sig"), f"envelope.signatures[{i}].sig")
        if not raw:
            raise EnvelopeError(f"envelope.signatures[{i}].sig is empty")
        out.append((keyid, raw))
    return payload_type, payload, out


def verify_envelope(
    envelope: Any,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    *,
    expected_payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> VerifiedEnvelope:
    """Verify the first signature whose key ``resolve_key`` knows; raise EnvelopeError otherwise."""
    payload_type, payload, sigs = parse_envelope(envelope)
    if payload_type != expected_payload_type:
        raise EnvelopeError(f"payloadType is '{payload_type}', expected '{expected_payload_type}'")
    unknown = []
    for keyid, sig in sigs:
        key = resolve_key(keyid)
        if key is None:
            unknown.append(keyid)
            continue
        try:
            key.verify(sig, pae(payload_type, payload))
        except InvalidSignature as exc:
            raise EnvelopeError(f"signature by key {keyid[:16]}… does not verify") from exc
        stmt = None
        if payload_type == IN_TOTO_PAYLOAD_TYPE:
            stmt = parse_statement(payload)
        return VerifiedEnvelope(keyid=keyid, payload=payload, statement=stmt)
    raise EnvelopeError(
        f"no signature by a known key (key ids: {', '.join(k[:16] for k in unknown)})"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_statement(payload: bytes) -> dict[str, Any]:
    try:
        stmt = json.loads(payload, parse_constant=_reject_constant)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise EnvelopeError("payload is not JSON") from exc
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError(
            f"payload is not an in-toto Statement v1 (_type must be {STATEMENT_TYPE})"
        )
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise EnvelopeError("statement.subject must be a non-empty list")
    if not isinstance(stmt.get("predicateType"), str):
        raise EnvelopeError("statement.predicateType is missing")
    return stmt


def subject_digests(stmt: dict[str, Any]) -> set[str]:
    """The subjects' sha256 digests (lower-cased hex strings)."""
    return {
        s["digest"]["sha256"].lower()
        for s in stmt.get("subject", [])
        if isinstance(s, dict)
        and isinstance(s.get("digest"), dict)
        and isinstance(s["digest"].get("sha256"), str)
    }
