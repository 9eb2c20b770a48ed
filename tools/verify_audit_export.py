#!/usr/bin/env python3
"""Check a Charter audit export (or a report package) offline:
``verify_audit_export.py EXPORT.zip``.

Self-contained on purpose (standard library + ``cryptography``; nothing from
Charter), so an auditor can read and run it without trusting the portal's code.

It checks, for ``events.jsonl``: seq contiguous from 1, each ``prev_hash`` equal
to the previous ``hash`` (the first to 64 zeros), ``hash = SHA-256(prev_hash ||
payload)``, and that each payload is already in RFC 8785 (JCS) canonical form
(re-canonicalised here by an independent implementation). For
``checkpoints.json``: each DSSE envelope is signed by a key in
``portal_public_keys.pem`` and its {"seq","hash"} match the event at that seq.

Retention: when older events were archived, an export also holds
``segments.json`` (each archived segment's manifest in a DSSE envelope signed by
the portal key); the segments must be signed, contiguous from seq 1, and the
events must continue from the last one's hash. An archived segment file itself
holds ``segment.json`` instead: its events must run exactly from the manifest's
first seq and prev_hash to its last seq and hash, with ``events.jsonl`` having
the signed SHA-256.

Report packages (lineage reports for auditors) hold ``manifest.json`` (every
file's SHA-256), ``manifest.dsse.json`` (the manifest signed by the portal key)
and ``portal_public_keys.pem``: the signature must verify over the manifest's
exact bytes, and the package must hold exactly the listed files with those
digests.

Exit 0 with "OK N events" (or "OK report package …"), or exit 1 naming the
first problem.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
import zipfile
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_HASH = "0" * 64
CHECKPOINT_PAYLOAD_TYPE = "application/vnd.charter.checkpoint+json"
REPORT_PAYLOAD_TYPE = "application/vnd.charter.report-manifest+json"
SEGMENT_PAYLOAD_TYPE = "application/vnd.charter.audit-segment+json"
MANIFEST_FIELDS = ("first_seq", "last_seq", "prev_hash", "last_hash", "events", "events_sha256")
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----\s.*?-----END PUBLIC KEY-----\s*", re.DOTALL)


class Bad(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


# ------------------------------------------------------------- RFC 8785 (JCS)


def _number(value: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 section 3.2.2.3 requires."""
    if not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    stripped = digits.lstrip("0")
    # value = 0.<digits> * 10**n
    n = len(whole) - (len(digits) - len(stripped)) + int(exp or 0)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-")
        text += str(abs(e))
    return sign + text


def _string(value: str) -> str:
    # Python's escaping with ensure_ascii=False is exactly JCS's: \" \\ \b \f \n \r \t,
    # other controls as lower-case \u00xx, everything else (DEL, non-ASCII) literal.
    value.encode("utf-8")  # lone surrogates cannot be canonicalised
    return json.dumps(value, ensure_ascii=False)


def canonicalize(value: Any) -> str:
    """RFC 8785 canonical JSON text of a parsed JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonicalize(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_string(k) + ":" + canonicalize(value[k]) for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# ------------------------------------------------------------------- checks


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    text = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def load_keys(pem: bytes) -> dict[str, Ed25519PublicKey]:
    found: dict[str, Ed25519PublicKey] = {}
    for block in _PEM_BLOCK.findall(pem):
        key = serialization.load_pem_public_key(block)
        if not isinstance(key, Ed25519PublicKey):
            continue
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        found[hashlib.sha256(raw).hexdigest()] = key
    return found


def check_events(data: bytes, start: int = 1, prev: str = GENESIS_HASH) -> list[str]:
    """Hashes of events start..N in order; raises Bad at the first bad line."""
    hashes: list[str] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for index, line in enumerate(lines):
        expected = start + index
        try:
            row = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
            seq, prev_hash, hash_, payload = (
                row["seq"],
                row["prev_hash"],
                row["hash"],
                row["payload"],
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise Bad(expected, f"line {index + 1} of events.jsonl is unreadable ({exc})") from exc
        if seq != expected or isinstance(seq, bool):
            raise Bad(expected, f"expected seq {expected}, found {seq!r}")
        if not isinstance(payload, str) or not isinstance(hash_, str):
            raise Bad(seq, "payload and hash must be strings")
        if prev_hash != prev:
            raise Bad(seq, "prev_hash does not match the previous event's hash")
        if hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest() != hash_:
            raise Bad(seq, "hash does not match sha256(prev_hash || payload)")
        try:
            event = json.loads(payload, parse_constant=_no_constant)
            canon = canonicalize(event)
        except (ValueError, TypeError) as exc:
            raise Bad(seq, f"payload is not canonicalisable JSON ({exc})") from exc
        if canon != payload:
            raise Bad(seq, "payload is not in RFC 8785 canonical form")
        if not isinstance(event, dict) or event.get("seq") != seq:
            raise Bad(seq, "payload seq differs from the event's seq")
        hashes.append(hash_)
        prev = hash_
    return hashes


def signed_body(envelope: Any, payload_type: str, keys: dict[str, Ed25519PublicKey]) -> Any:
    """The JSON payload of a DSSE envelope signed by one of ``keys``; ValueError if not."""
    try:
        if envelope["payloadType"] != payload_type:
            raise ValueError(f"payloadType is {envelope['payloadType']!r}")
        payload = _b64(envelope["payload"])
        sigs = envelope["signatures"]
    except (TypeError, KeyError, binascii.Error) as exc:
        raise ValueError(f"malformed envelope ({exc})") from exc
    for sig in sigs if isinstance(sigs, list) else []:
        key = keys.get(sig.get("keyid", "")) if isinstance(sig, dict) else None
        if key is None:
            continue
        try:
            key.verify(_b64(sig.get("sig")), _pae(payload_type, payload))
        except (InvalidSignature, ValueError, binascii.Error) as exc:
            raise ValueError("signature does not verify") from exc
        return json.loads(payload)
    raise ValueError("no signature by a key in portal_public_keys.pem")


def check_manifest(entry: Any, keys: dict[str, Ed25519PublicKey]) -> dict[str, Any]:
    """A segment manifest whose listed fields equal its signed ones."""
    try:
        body = signed_body(entry["envelope"], SEGMENT_PAYLOAD_TYPE, keys)
    except (TypeError, KeyError, ValueError) as exc:
        where = entry.get("first_seq") if isinstance(entry, dict) else None
        raise Bad(where if isinstance(where, int) else None, f"segment: {exc}") from exc
    if not isinstance(body, dict) or any(body.get(k) != entry.get(k) for k in MANIFEST_FIELDS):
        raise Bad(entry.get("first_seq"), "segment: signed manifest differs from the listed one")
    return body


def check_segments(data: bytes, keys: dict[str, Ed25519PublicKey]) -> tuple[int, str, int]:
    """Walk segments.json: (next seq, hash before it, segments checked)."""
    entries = json.loads(data.decode("utf-8"))
    if not isinstance(entries, list):
        raise Bad(None, "segments.json must hold a list")
    start, prev = 1, GENESIS_HASH
    for entry in entries:
        body = check_manifest(entry, keys)
        if body["first_seq"] != start or body["prev_hash"] != prev:
            raise Bad(start, "archived segments are not contiguous")
        start, prev = body["last_seq"] + 1, body["last_hash"]
    return start, prev, len(entries)


def check_checkpoints(
    data: bytes, keys: dict[str, Ed25519PublicKey], hashes: list[str], start: int = 1
) -> int:
    try:
        checkpoints = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise Bad(None, f"checkpoints.json is unreadable ({exc})") from exc
    if not isinstance(checkpoints, list):
        raise Bad(None, "checkpoints.json must hold a list")
    for i, cp in enumerate(checkpoints):
        seq = cp.get("seq") if isinstance(cp, dict) else None
        where = seq if isinstance(seq, int) else None
        try:
            envelope = cp["envelope"]
            payload_type = envelope["payloadType"]
            payload = _b64(envelope["payload"])
            sigs = envelope["signatures"]
            if payload_type != CHECKPOINT_PAYLOAD_TYPE:
                raise ValueError(f"payloadType is {payload_type!r}")
            body = json.loads(payload)
        except (TypeError, KeyError, ValueError, binascii.Error) as exc:
            raise Bad(where, f"checkpoint {i} is malformed ({exc})") from exc
        verified = False
        for sig in sigs if isinstance(sigs, list) else []:
            key = keys.get(sig.get("keyid", "")) if isinstance(sig, dict) else None
            if key is None:
                continue
            try:
                key.verify(_b64(sig.get("sig")), _pae(payload_type, payload))
            except (InvalidSignature, ValueError, binascii.Error) as exc:
                raise Bad(where, f"checkpoint {i}: signature does not verify") from exc
            verified = True
            break
        if not verified:
            raise Bad(where, f"checkpoint {i}: no signature by a key in portal_public_keys.pem")
        if (
            not isinstance(body, dict)
            or body.get("seq") != seq
            or body.get("hash") != cp.get("hash")
        ):
            raise Bad(where, f"checkpoint {i}: signed seq/hash differ from the listed ones")
        if isinstance(seq, int) and 1 <= seq < start:
            continue  # archived: compared with its event when the segment was cut
        if not isinstance(seq, int) or not start <= seq < start + len(hashes):
            raise Bad(where, f"checkpoint {i}: seq {seq!r} is not in the export")
        if hashes[seq - start] != body["hash"]:
            raise Bad(seq, f"checkpoint {i}: hash differs from the event at seq {seq}")
    return len(checkpoints)


def verify_report(archive: zipfile.ZipFile) -> str:
    """Check a report package; the summary line, or Bad naming the problem."""
    names = set(archive.namelist())
    keys = load_keys(archive.read("portal_public_keys.pem"))
    manifest_bytes = archive.read("manifest.json")
    try:
        envelope = json.loads(archive.read("manifest.dsse.json"))
        signed = signed_body(envelope, REPORT_PAYLOAD_TYPE, keys)
    except (KeyError, ValueError) as exc:
        raise Bad(None, f"manifest signature: {exc}") from exc
    if _b64(envelope["payload"]) != manifest_bytes:
        raise Bad(None, "manifest.json differs from the signed manifest")
    files = signed.get("files") if isinstance(signed, dict) else None
    if not isinstance(files, dict) or not files:
        raise Bad(None, "the signed manifest lists no files")
    own = {"manifest.json", "manifest.dsse.json", "portal_public_keys.pem"}
    extra = sorted(names - own - set(files))
    if extra:
        raise Bad(None, f"files not in the manifest: {', '.join(extra)}")
    for name, digest in sorted(files.items()):
        if name not in names:
            raise Bad(None, f"{name} is listed in the manifest but missing")
        if hashlib.sha256(archive.read(name)).hexdigest() != digest:
            raise Bad(None, f"{name} does not match its SHA-256 in the signed manifest")
    subject = signed.get("subject", {})
    return f"OK report package for {subject.get('name', '?')}: {len(files)} files verified"


def verify(path: str) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        events = archive.read("events.jsonl")
        checkpoints = archive.read("checkpoints.json")
        pem = archive.read("portal_public_keys.pem")
        segments = archive.read("segments.json") if "segments.json" in names else None
        segment = archive.read("segment.json") if "segment.json" in names else None
    keys = load_keys(pem)
    start, prev = 1, GENESIS_HASH
    if segments is not None:
        start, prev, _ = check_segments(segments, keys)
    manifest = None
    if segment is not None:  # an archived segment file
        manifest = check_manifest(json.loads(segment.decode("utf-8")), keys)
        start, prev = manifest["first_seq"], manifest["prev_hash"]
        if hashlib.sha256(events).hexdigest() != manifest["events_sha256"]:
            raise Bad(start, "events.jsonl differs from the signed segment manifest")
    hashes = check_events(events, start, prev)
    if manifest is not None and (
        start + len(hashes) - 1 != manifest["last_seq"]
        or (hashes[-1] if hashes else prev) != manifest["last_hash"]
    ):
        raise Bad(manifest["last_seq"], "events do not end at the segment's last seq and hash")
    return len(hashes), check_checkpoints(checkpoints, keys, hashes, start)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} EXPORT.zip", file=sys.stderr)
        return 2
    try:
        with zipfile.ZipFile(argv[1]) as archive:
            if "manifest.dsse.json" in archive.namelist():
                try:
                    print(verify_report(archive))
                except Bad as exc:
                    print(f"FAILED: {exc.reason}")
                    return 1
                return 0
        events, checkpoints = verify(argv[1])
    except Bad as exc:
        where = f"seq {exc.seq}" if exc.seq is not None else "checkpoints"
        print(f"FAILED at {where}: {exc.reason}")
        return 1
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        print(f"FAILED: cannot read export ({exc})")
        return 1
    print(f"OK {events} events, {checkpoints} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
