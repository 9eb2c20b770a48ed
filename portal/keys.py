"""The portal's own Ed25519 signing key.

Read from ``CHARTER_SIGNING_KEY`` (PEM text) or ``CHARTER_SIGNING_KEY_FILE``
(a PEM file); with neither set and not in production, generated once into
``var/portal_signing_key.pem`` (mode 0600). Never stored in the database.
Rotation: ``CHARTER_SIGNING_KEY_PREVIOUS_FILES`` lists older PEM files whose
public keys stay valid for verification.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings


class SigningKeyUnavailable(RuntimeError):
    """The portal's private key is missing or unreadable: signing is impossible."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """Charter's key id: SHA-256 (hex) of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class PortalKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def _load_private(pem: bytes, origin: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyUnavailable(f"{origin} is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyUnavailable(f"{origin} is not an Ed25519 private key")
    return key


def _generate_local(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


@cache
def portal_key() -> PortalKey:
    """The portal's signing key, or SigningKeyUnavailable with the reason."""
    text = os.environ.get("CHARTER_SIGNING_KEY")
    if text:
        return PortalKey(_load_private(text.encode(), "CHARTER_SIGNING_KEY"))
    file = os.environ.get("CHARTER_SIGNING_KEY_FILE")
    if file:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise SigningKeyUnavailable(f"CHARTER_SIGNING_KEY_FILE={file}: {exc.strerror}") from exc
        return PortalKey(_load_private(data, f"CHARTER_SIGNING_KEY_FILE={file}"))
    if getattr(settings, "PRODUCTION", False):
        raise SigningKeyUnavailable(
            "no signing key configured: set CHARTER_SIGNING_KEY_FILE (or CHARTER_SIGNING_KEY)"
        )
    path = Path(settings.VAR_DIR) / "portal_signing_key.pem"
    if path.exists():
        return PortalKey(_load_private(path.read_bytes(), str(path)))
    return PortalKey(_generate_local(path))


def previous_public_keys() -> list[Ed25519PublicKey]:
    """Public halves of retired portal keys, kept so old signatures still verify."""
    keys = []
    for file in filter(None, os.environ.get("CHARTER_SIGNING_KEY_PREVIOUS_FILES", "").split(",")):
        keys.append(_load_private(Path(file.strip()).read_bytes(), file).public_key())
    return keys
