"""Interoperability with securesystemslib's DSSE implementation, both ways."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey
from securesystemslib.signer._utils import compute_default_keyid

from portal import dsse
from portal import keys as portal_keys
from portal.keys import load_public_pem
from portal.permissions import Access
from registry import signing
from registry.models import Attestation
from tests.registry.test_signing import (
    PREDICATE,
    SHA,
    artifact_body,
    charter_id,
    new_key,
    private_pem,
    public_pem,
    statement_of,
    with_payload,
)


@pytest.fixture
def fresh_portal_key(monkeypatch: Any) -> Any:
    key = new_key()
    monkeypatch.setenv("CHARTER_SIGNING_KEY", private_pem(key))
    monkeypatch.delenv("CHARTER_SIGNING_KEY_PREVIOUS_FILES", raising=False)
    portal_keys.portal_key.cache_clear()
    yield key
    portal_keys.portal_key.cache_clear()


def _sslib_envelope(key: Ed25519PrivateKey, keyid: str | None, sha: str = SHA) -> dict[str, Any]:
    """An envelope made entirely by securesystemslib's signer."""
    public = SSlibKey.from_crypto(key.public_key(), keyid=keyid)
    signer = CryptoSigner(key, public)
    stmt = dsse.statement([("model.onnx", sha)], PREDICATE, {"builder": "sslib"})
    envelope = Envelope(json.dumps(stmt).encode(), dsse.IN_TOTO_PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return envelope.to_dict()


def test_sslib_key_id_matches_securesystemslib() -> None:
    key = Ed25519PrivateKey.generate()
    public = SSlibKey.from_crypto(key.public_key())
    assert signing.sslib_key_id(key.public_key()) == public.keyid
    assert public.keyid == compute_default_keyid(public.keytype, public.scheme, public.keyval)


def test_portal_signed_envelope_verifies_with_securesystemslib(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    artifact = world.tree["a"]["artifact"]
    response = world.client("contributor_a").post(
        f"/api/v1/artifacts/{artifact.pk}/sign/", {"predicate_type": PREDICATE}, format="json"
    )
    assert response.status_code == 201, response.json()
    raw = world.client("auditor").get(f"/api/v1/attestations/{response.json()['id']}/envelope/")
    envelope_dict = raw.json()
    portal = world.client("auditor").get("/api/v1/portal-key/").json()
    assert portal["key_id"] == charter_id(fresh_portal_key)

    # The verifier knows the key only from what Charter publishes: the PEM and the key id.
    public = SSlibKey.from_crypto(load_public_pem(portal["public_key_pem"]), keyid=portal["key_id"])
    envelope = Envelope.from_dict(copy.deepcopy(envelope_dict))
    accepted = envelope.verify([public], 1)
    assert list(accepted) == [portal["key_id"]]
    assert envelope.payload_type == "application/vnd.in-toto+json"
    stmt = statement_of(envelope_dict)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"][0]["digest"]["sha256"] == artifact.sha256

    # And a tampered copy does not.
    stmt["subject"][0]["digest"]["sha256"] = "0" * 64
    tampered = Envelope.from_dict(copy.deepcopy(with_payload(envelope_dict, stmt)))
    with pytest.raises(VerificationError):
        tampered.verify([public], 1)


def test_portal_signature_verifies_with_securesystemslib_default_key_id(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    """A verifier using securesystemslib's own key id finds it in the key registry."""
    att = signing.sign_artifact_as_portal(
        Access(user=world.users["contributor_a"]), world.tree["a"]["artifact"], PREDICATE, {}
    )
    sslib_id = att.signer_key.sslib_key_id
    public = SSlibKey.from_crypto(fresh_portal_key.public_key())
    assert public.keyid == sslib_id
    env = copy.deepcopy(att.envelope)
    env["signatures"][0]["keyid"] = sslib_id  # keyid is an unsigned hint in DSSE
    assert list(Envelope.from_dict(env).verify([public], 1)) == [sslib_id]


@pytest.mark.parametrize("keyid_style", ["charter", "securesystemslib"])
def test_securesystemslib_envelope_is_accepted_when_key_registered(
    world: Any, keyid_style: str
) -> None:
    key = Ed25519PrivateKey.generate()
    keyid = charter_id(key) if keyid_style == "charter" else None
    envelope = _sslib_envelope(key, keyid)
    client = world.client("contributor_a")

    refused = client.post("/api/v1/artifacts/", artifact_body(world, SHA, envelope), format="json")
    assert refused.status_code == 400
    assert "not signed by a registered key" in refused.json()["errors"]["envelope"][0]

    registered = client.post(
        "/api/v1/signing-keys/",
        {"public_key_pem": public_pem(key), "kind": "pipeline"},
        format="json",
    )
    assert registered.status_code == 201
    response = client.post("/api/v1/artifacts/", artifact_body(world, SHA, envelope), format="json")
    assert response.status_code == 201, response.json()
    [att] = response.json()["attestations"]
    assert att["verdict"] == "verified"
    assert att["signer_key_id"] == registered.json()["key_id"]
    row = Attestation.objects.get(pk=att["id"])
    assert row.envelope == envelope


def test_tampered_securesystemslib_envelope_is_refused(world: Any) -> None:
    key = Ed25519PrivateKey.generate()
    signing.register_signing_key(
        Access(user=world.users["contributor_a"]), public_key_pem=public_pem(key), kind="pipeline"
    )
    envelope = _sslib_envelope(key, charter_id(key))
    stmt = statement_of(envelope)
    stmt["predicate"]["builder"] = "someone else"
    response = world.client("contributor_a").post(
        "/api/v1/artifacts/", artifact_body(world, SHA, with_payload(envelope, stmt)), format="json"
    )
    assert response.status_code == 400
    assert "does not verify" in response.json()["errors"]["envelope"][0]
