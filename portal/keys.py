"""The portal's own Ed25519 signing key.

Read from ``CHARTER_SIGNING_KEY`` (PEM text) or ``CHARTER_SIGNING_KEY_FILE``
(a PEM file); with neither set and not in production, generated once into
``var/portal_signing_key.pem`` (mode 0600). Never stored in the database.
Rotation: ``CHARTER_SIGNING_KEY_PREVIOUS_FILES`` lists older PEM files (public
keys, or the retired private keys) whose public keys stay valid for
verification.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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
    """SubjectPublicKeyInfo PEM text of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; ValueError unless it is a readable Ed25519 public key."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a readable PEM public key ({exc})") from exc
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
    """Generate the local key once; a concurrent process that wins the race wins for all."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write a private temporary file completely, then link it into place: the link
    # is atomic and fails if another process got there first, so no reader ever
    # sees a half-written key and two processes never end up with different keys.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".portal_key.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load_private(path.read_bytes(), str(path))
    finally:
        os.unlink(tmp)
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


SIGNING_DOWN_CONSEQUENCES = (
    "signing (approval attestations, audit checkpoints, report packages, portal-signed "
    "attestations) fails with 503 until it is fixed; verifying existing signatures still works"
)


def configured_problem() -> str | None:
    """Why the configured portal key cannot be used, else None.

    None as well in the embedded default with no key yet: that one is generated on first use.
    """
    configured = os.environ.get("CHARTER_SIGNING_KEY") or os.environ.get("CHARTER_SIGNING_KEY_FILE")
    if not configured and not getattr(settings, "PRODUCTION", False):
        return None
    try:
        portal_key()
    except SigningKeyUnavailable as exc:
        return str(exc)
    return None


def _load_previous(file: str) -> Ed25519PublicKey:
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise SigningKeyUnavailable(
            f"CHARTER_SIGNING_KEY_PREVIOUS_FILES: {file}: {exc.strerror}"
        ) from exc
    # A retired key's public half is enough (and safer to keep around than the
    # private one); a private PEM is accepted too for backwards compatibility.
    try:
        return load_public_pem(data)
    except ValueError:
        return _load_private(data, file).public_key()


def previous_public_keys() -> list[Ed25519PublicKey]:
    """Public halves of retired portal keys, kept so old signatures still verify."""
    files = os.environ.get("CHARTER_SIGNING_KEY_PREVIOUS_FILES", "").split(",")
    return [_load_previous(file.strip()) for file in files if file.strip()]
