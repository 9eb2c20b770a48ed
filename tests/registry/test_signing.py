"""Signing keys, attestations and their verification (tamper cases refused and audited)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone
from rest_framework.test import APIClient

from audits.models import AuditEvent
from portal import dsse
from portal import keys as portal_keys
from portal.permissions import Access
from registry import signing
from registry.models import Artifact, Attestation, Evidence, SigningKey
from tests import factories as f

# ---------------------------------------------------------------- helpers

PREDICATE = "https://charter.example/attestation/build/v1"


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(key: Ed25519PrivateKey) -> str:
    return portal_keys.public_pem(key.public_key())


def private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def charter_id(key: Ed25519PrivateKey) -> str:
    return portal_keys.key_id(key.public_key())


def envelope(
    key: Ed25519PrivateKey,
    sha256: str,
    *,
    name: str = "model.onnx",
    predicate_type: str = PREDICATE,
    predicate: dict[str, Any] | None = None,
    payload_type: str = dsse.IN_TOTO_PAYLOAD_TYPE,
    keyid: str | None = None,
) -> dict[str, Any]:
    stmt = dsse.statement([(name, sha256)], predicate_type, predicate or {"builder": "ci"})
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    return dsse.sign_envelope(
        payload, keyid if keyid is not None else charter_id(key), key.sign, payload_type
    )


def with_payload(env: dict[str, Any], stmt: dict[str, Any]) -> dict[str, Any]:
    """The same signatures over a different payload (tampering)."""
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    return {**env, "payload": base64.b64encode(payload).decode()}


def statement_of(env: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(env["payload"]))


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()  # type: ignore[return-value]


def register(world: Any, who: str, key: Ed25519PrivateKey, kind: str = "pipeline") -> SigningKey:
    return signing.register_signing_key(
        Access(user=world.users[who]), public_key_pem=public_pem(key), kind=kind, name=who
    )


@pytest.fixture
def fresh_portal_key(monkeypatch: Any) -> Ed25519PrivateKey:
    """A portal key of this test's own, from CHARTER_SIGNING_KEY."""
    key = new_key()
    monkeypatch.setenv("CHARTER_SIGNING_KEY", private_pem(key))
    monkeypatch.delenv("CHARTER_SIGNING_KEY_FILE", raising=False)
    monkeypatch.delenv("CHARTER_SIGNING_KEY_PREVIOUS_FILES", raising=False)
    portal_keys.portal_key.cache_clear()
    yield key
    portal_keys.portal_key.cache_clear()


def artifact_body(world: Any, sha: str, env: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_version": world.tree["a"]["model_version"].pk,
        "name": "model.onnx",
        "uri": "s3://models/a/model.onnx",
        "sha256": sha,
        "size_bytes": 2048,
    }
    if env is not None:
        body["envelope"] = env
    return body


SHA = f.digest("the real model bytes")
OTHER_SHA = f.digest("some other bytes")


# ---------------------------------------------------------------- keys


def test_upload_pem_registers_key_owned_by_caller(world: Any) -> None:
    key = new_key()
    before = AuditEvent.objects.count()
    response = world.client("contributor_a").post(
        "/api/v1/signing-keys/",
        {"public_key_pem": public_pem(key), "kind": "pipeline", "name": "ci"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["key_id"] == charter_id(key)
    assert body["owner"] == "contrib_a" and body["kind"] == "pipeline"
    assert body["revoked"] is False and body["public_key_pem"].startswith("-----BEGIN PUBLIC KEY")
    assert AuditEvent.objects.count() == before + 1
    event = last_event()
    assert event.action == "create" and event.object_type == "registry.signingkey"


def test_public_keys_are_readable_by_any_authenticated_user(world: Any) -> None:
    key = register(world, "contributor_a", new_key())
    client = world.client("outsider")
    ids = [row["key_id"] for row in client.get("/api/v1/signing-keys/").json()["results"]]
    assert key.key_id in ids
    for ident in (key.pk, key.key_id, key.sslib_key_id):
        detail = client.get(f"/api/v1/signing-keys/{ident}/")
        assert detail.status_code == 200 and detail.json()["id"] == key.pk
    pem = client.get(f"/api/v1/signing-keys/{key.key_id}/pem/")
    assert pem.status_code == 200
    assert pem["Content-Type"].startswith("text/plain")
    assert pem.content.decode() == key.public_key_pem
    assert client.get(f"/api/v1/signing-keys/{'0' * 64}/pem/").status_code == 404
    assert APIClient().get("/api/v1/signing-keys/").status_code in (401, 403)


@pytest.mark.parametrize(
    ("pem", "field", "phrase"),
    [
        (lambda k: private_pem(k), "public_key_pem", "PRIVATE key"),
        (lambda k: "not a key at all", "public_key_pem", "not a readable PEM public key"),
        (
            lambda k: (
                ec.generate_private_key(ec.SECP256R1())
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            ),
            "public_key_pem",
            "not an Ed25519 public key",
        ),
    ],
)
def test_bad_pem_is_refused_naming_the_field(world: Any, pem: Any, field: str, phrase: str) -> None:
    before = SigningKey.objects.count()
    response = world.client("contributor_a").post(
        "/api/v1/signing-keys/", {"public_key_pem": pem(new_key())}, format="json"
    )
    assert response.status_code == 400
    assert phrase in " ".join(response.json()["errors"][field])
    assert SigningKey.objects.count() == before


def test_duplicate_key_and_portal_kind_are_refused(world: Any) -> None:
    key = register(world, "contributor_a", new_key())
    client = world.client("contributor_b")
    response = client.post(
        "/api/v1/signing-keys/", {"public_key_pem": key.public_key_pem}, format="json"
    )
    assert response.status_code == 400
    assert "already registered" in response.json()["errors"]["public_key_pem"][0]
    response = client.post(
        "/api/v1/signing-keys/",
        {"public_key_pem": public_pem(new_key()), "kind": "portal"},
        format="json",
    )
    assert response.status_code == 400 and "kind" in response.json()["errors"]


def test_portal_public_key_cannot_be_claimed_by_a_person(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    response = world.client("contributor_a").post(
        "/api/v1/signing-keys/", {"public_key_pem": public_pem(fresh_portal_key)}, format="json"
    )
    assert response.status_code == 400
    assert "portal" in response.json()["errors"]["public_key_pem"][0]


def test_owner_revokes_key_audited(world: Any) -> None:
    key = register(world, "contributor_a", new_key())
    other = world.client("contributor_b").post(
        f"/api/v1/signing-keys/{key.pk}/revoke/", {"reason": "mine now"}, format="json"
    )
    assert other.status_code == 403
    client = world.client("contributor_a")
    missing = client.post(f"/api/v1/signing-keys/{key.pk}/revoke/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["errors"]
    future = client.post(
        f"/api/v1/signing-keys/{key.pk}/revoke/",
        {"reason": "x", "revoked_at": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert future.status_code == 400 and "revoked_at" in future.json()["errors"]
    response = client.post(
        f"/api/v1/signing-keys/{key.pk}/revoke/", {"reason": "laptop stolen"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["revoked"] is True
    assert response.json()["revoked_reason"] == "laptop stolen"
    event = last_event()
    assert event.action == "revoke" and event.object_id == str(key.pk)
    assert event.changes["reason"] == "laptop stolen"
    again = client.post(
        f"/api/v1/signing-keys/{key.pk}/revoke/", {"reason": "again"}, format="json"
    )
    assert again.status_code == 400 and "revoked_at" in again.json()["errors"]


def test_admin_may_revoke_anyones_key(world: Any) -> None:
    key = register(world, "contributor_a", new_key())
    response = world.client("admin").post(
        f"/api/v1/signing-keys/{key.key_id}/revoke/", {"reason": "left the company"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["revoked_by"] == "admin_user"


# ---------------------------------------------------------------- artifacts with envelopes


def test_artifact_with_valid_envelope_is_verified_and_stored(world: Any) -> None:
    key = new_key()
    registered = register(world, "contributor_a", key)
    before = AuditEvent.objects.count()
    response = world.client("contributor_a").post(
        "/api/v1/artifacts/", artifact_body(world, SHA, envelope(key, SHA)), format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "envelope" not in body
    assert body["signature_status"] == "verified"
    [att] = body["attestations"]
    assert att["verdict"] == "verified" and att["signer_key_id"] == registered.key_id
    assert att["signer"] == "contrib_a" and att["predicate_type"] == PREDICATE
    assert att["verified_at"]
    row = Attestation.objects.get(pk=att["id"])
    assert row.artifact_id == body["id"] and row.signer_key == registered
    assert row.payload_type == dsse.IN_TOTO_PAYLOAD_TYPE and row.subject_sha256 == SHA
    actions = list(
        AuditEvent.objects.filter(seq__gt=before)
        .order_by("seq")
        .values_list("action", "object_type")
    )
    assert actions == [
        ("create", "registry.artifact"),
        ("create", "registry.attestation"),
        ("verify", "registry.attestation"),
    ]
    assert last_event().changes["verdict"] == "verified"


def test_envelope_may_be_sent_as_json_text(world: Any) -> None:
    key = new_key()
    register(world, "contributor_a", key)
    text = json.dumps(envelope(key, SHA))
    response = world.client("contributor_a").post(
        "/api/v1/artifacts/", artifact_body(world, SHA, text), format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["signature_status"] == "verified"


def test_artifact_without_envelope_is_unsigned(world: Any) -> None:
    response = world.client("contributor_a").post(
        "/api/v1/artifacts/", artifact_body(world, SHA), format="json"
    )
    assert response.status_code == 201
    assert response.json()["signature_status"] == "unsigned"
    assert response.json()["attestations"] == []


def _revoked_key_envelope(world: Any) -> dict[str, Any]:
    key = new_key()
    registered = register(world, "contributor_a", key)
    signing.revoke_signing_key(
        Access(user=world.users["contributor_a"]), registered, reason="key leaked"
    )
    return envelope(key, SHA)


def _altered_payload(world: Any) -> dict[str, Any]:
    key = new_key()
    register(world, "contributor_a", key)
    env = envelope(key, SHA)
    stmt = statement_of(env)
    stmt["predicate"]["builder"] = "attacker"
    return with_payload(env, stmt)


def _registered(world: Any, **kwargs: Any) -> dict[str, Any]:
    key = new_key()
    register(world, "contributor_a", key)
    return envelope(key, kwargs.pop("sha", SHA), **kwargs)


def _cut(world: Any) -> str:
    text = json.dumps(_registered(world))
    return text[: len(text) // 2]


def _no_signatures(world: Any) -> dict[str, Any]:
    return {**_registered(world), "signatures": []}


def _bad_base64(world: Any) -> dict[str, Any]:
    env = _registered(world)
    return {**env, "payload": env["payload"][:-3] + "!!!"}


def _bad_sig_base64(world: Any) -> dict[str, Any]:
    env = _registered(world)
    env["signatures"][0]["sig"] = "%%%not base64%%%"
    return env


TAMPER_CASES = {
    "changed_digest": (
        lambda w: _registered(w, sha=OTHER_SHA),
        "digest_mismatch",
        "does not match",
    ),
    "unregistered_key": (
        lambda w: envelope(new_key(), SHA),
        "unknown_key",
        "not signed by a registered key",
    ),
    "revoked_key": (_revoked_key_envelope, "revoked_key", "was revoked at"),
    "altered_payload": (_altered_payload, "bad_signature", "does not verify"),
    "truncated_json": (_cut, "malformed", "not valid JSON"),
    "missing_signatures": (_no_signatures, "malformed", "signatures must be a non-empty list"),
    "bad_payload_base64": (_bad_base64, "malformed", "payload is not valid base64"),
    "bad_sig_base64": (_bad_sig_base64, "malformed", "sig is not valid base64"),
    "wrong_payload_type": (
        lambda w: _registered(w, payload_type="application/json"),
        "wrong_payload_type",
        "expected 'application/vnd.in-toto+json'",
    ),
    "not_an_object": (lambda w: [1, 2, 3], "malformed", "must be a DSSE JSON object"),
}


@pytest.mark.parametrize("case", sorted(TAMPER_CASES))
def test_tampered_artifact_upload_is_refused_nothing_written_refusal_audited(
    world: Any, case: str
) -> None:
    make, code, phrase = TAMPER_CASES[case]
    env = make(world)
    counts = (Artifact.objects.count(), Attestation.objects.count())
    before = AuditEvent.objects.order_by("-seq").first().seq
    response = world.client("contributor_a").post(
        "/api/v1/artifacts/", artifact_body(world, SHA, env), format="json"
    )
    assert response.status_code == 400, response.json()
    [message] = response.json()["errors"]["envelope"]
    assert phrase in message
    assert (Artifact.objects.count(), Attestation.objects.count()) == counts
    [event] = AuditEvent.objects.filter(seq__gt=before)
    assert event.action == "verify"
    assert event.object_type == "registry.modelversion"
    assert event.object_id == str(world.tree["a"]["model_version"].pk)
    assert event.actor_repr == "contrib_a"
    assert event.changes["verdict"] == "failed"
    assert event.changes["reason"] == message and event.changes["code"] == code
    assert event.changes["target"]["type"] == "artifact"
    assert event.changes["target"]["sha256"] == SHA


@pytest.mark.parametrize(
    "case",
    ["changed_digest", "unregistered_key", "revoked_key", "truncated_json", "wrong_payload_type"],
)
def test_tampered_envelope_attached_later_is_refused_and_audited(world: Any, case: str) -> None:
    make, code, phrase = TAMPER_CASES[case]
    artifact = f.artifact(world.tree["a"]["model_version"], sha256=SHA)
    env = make(world)
    before = AuditEvent.objects.order_by("-seq").first().seq
    response = world.client("contributor_a").post(
        f"/api/v1/artifacts/{artifact.pk}/attestations/", {"envelope": env}, format="json"
    )
    assert response.status_code == 400
    assert phrase in response.json()["errors"]["envelope"][0]
    assert not artifact.attestations.exists()
    [event] = AuditEvent.objects.filter(seq__gt=before)
    assert (event.action, event.object_type, event.object_id) == (
        "verify",
        "registry.artifact",
        str(artifact.pk),
    )
    assert event.changes["verdict"] == "failed" and event.changes["code"] == code


def test_attach_envelope_later_and_list_it(world: Any) -> None:
    key = new_key()
    register(world, "contributor_a", key)
    artifact = f.artifact(world.tree["a"]["model_version"], sha256=SHA)
    client = world.client("contributor_a")
    response = client.post(
        f"/api/v1/artifacts/{artifact.pk}/attestations/",
        {"envelope": envelope(key, SHA)},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["artifact"] == artifact.pk
    listed = client.get(f"/api/v1/artifacts/{artifact.pk}/attestations/").json()
    assert [a["id"] for a in listed] == [response.json()["id"]]
    again = client.post(
        f"/api/v1/artifacts/{artifact.pk}/attestations/",
        {"envelope": envelope(key, SHA)},
        format="json",
    )
    assert again.status_code == 400
    assert "already attached" in again.json()["errors"]["envelope"][0]


def test_missing_envelope_field_names_it(world: Any) -> None:
    artifact = world.tree["a"]["artifact"]
    response = world.client("contributor_a").post(
        f"/api/v1/artifacts/{artifact.pk}/attestations/", {}, format="json"
    )
    assert response.status_code == 400 and "envelope" in response.json()["errors"]


def test_attaching_needs_contribute_rights_and_visibility(world: Any) -> None:
    key = new_key()
    register(world, "viewer_a", key)
    artifact = world.tree["a"]["artifact"]
    env = envelope(key, artifact.sha256)
    url = f"/api/v1/artifacts/{artifact.pk}/attestations/"
    assert world.client("viewer_a").post(url, {"envelope": env}, format="json").status_code == 403
    assert (
        world.client("contributor_b").post(url, {"envelope": env}, format="json").status_code == 404
    )
    assert not artifact.attestations.exists()


def test_any_registered_key_may_sign_but_signer_is_its_owner(world: Any) -> None:
    """A pipeline key owned by someone else still verifies; the signer shown is the owner."""
    key = new_key()
    register(world, "contributor_b", key)
    artifact = world.tree["a"]["artifact"]
    response = world.client("contributor_a").post(
        f"/api/v1/artifacts/{artifact.pk}/attestations/",
        {"envelope": envelope(key, artifact.sha256)},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["signer"] == "contrib_b"


def test_key_revoked_after_receipt_leaves_verdict_standing(world: Any) -> None:
    key = new_key()
    registered = register(world, "contributor_a", key)
    artifact = f.artifact(world.tree["a"]["model_version"], sha256=SHA)
    att = signing.attach_attestation(
        Access(user=world.users["contributor_a"]), artifact, envelope(key, SHA)
    )
    signing.revoke_signing_key(Access.system(), registered, reason="rotated")
    att.refresh_from_db()
    assert att.verdict == "verified"
    assert signing.reverify(att) == (True, "")
    detail = world.client("contributor_a").get(f"/api/v1/artifacts/{artifact.pk}/").json()
    assert detail["signature_status"] == "verified"


def test_backdated_revocation_fails_reverification(world: Any) -> None:
    key = new_key()
    registered = register(world, "contributor_a", key)
    artifact = f.artifact(world.tree["a"]["model_version"], sha256=SHA)
    att = signing.attach_attestation(
        Access(user=world.users["contributor_a"]), artifact, envelope(key, SHA)
    )
    signing.revoke_signing_key(
        Access.system(),
        registered,
        reason="compromised last week",
        revoked_at=att.verified_at - timedelta(days=7),
    )
    ok, reason = signing.reverify(att)
    assert not ok and "revoked" in reason


# ---------------------------------------------------------------- evidence


def test_evidence_with_envelope_and_model_version_detail_shows_signatures(world: Any) -> None:
    key = new_key()
    registered = register(world, "contributor_a", key)
    mv = world.tree["a"]["model_version"]
    ev_sha = f.digest("bias report")
    client = world.client("contributor_a")
    response = client.post(
        "/api/v1/evidence/",
        {
            "model_version": mv.pk,
            "kind": "bias_evaluation",
            "title": "Bias evaluation",
            "sha256": ev_sha,
            "envelope": envelope(key, ev_sha, name="bias.html"),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["signature_status"] == "verified"
    assert Attestation.objects.get(evidence_id=response.json()["id"]).artifact_id is None
    detail = client.get(f"/api/v1/model-versions/{mv.pk}/").json()
    evidence = {e["id"]: e for e in detail["evidence"]}
    signed = evidence[response.json()["id"]]
    assert signed["signature_status"] == "verified"
    assert signed["attestations"][0]["signer_key_id"] == registered.key_id
    assert signed["attestations"][0]["signer"] == "contrib_a"
    artifacts = {a["id"]: a for a in detail["artifacts"]}
    assert artifacts[world.tree["a"]["artifact"].pk]["signature_status"] == "unsigned"


def test_tampered_evidence_is_refused_and_not_written(world: Any) -> None:
    key = new_key()
    register(world, "contributor_a", key)
    mv = world.tree["a"]["model_version"]
    before = (Evidence.objects.count(), AuditEvent.objects.order_by("-seq").first().seq)
    response = world.client("contributor_a").post(
        "/api/v1/evidence/",
        {
            "model_version": mv.pk,
            "kind": "security_scan",
            "title": "Scan",
            "sha256": f.digest("scan"),
            "envelope": envelope(key, f.digest("another scan")),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "does not match" in response.json()["errors"]["envelope"][0]
    assert Evidence.objects.count() == before[0]
    [event] = AuditEvent.objects.filter(seq__gt=before[1])
    assert event.action == "verify" and event.changes["target"]["type"] == "evidence"


def test_evidence_attestation_attached_later(world: Any) -> None:
    key = new_key()
    register(world, "contributor_a", key)
    ev = world.tree["a"]["evidence"]
    response = world.client("contributor_a").post(
        f"/api/v1/evidence/{ev.pk}/attestations/",
        {"envelope": envelope(key, ev.sha256)},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["evidence"] == ev.pk


# ---------------------------------------------------------------- attestation endpoints


def _attested(world: Any, tree: str = "a") -> Attestation:
    key = new_key()
    user = "contributor_a" if tree == "a" else "contributor_b"
    register(world, user, key)
    artifact = world.tree[tree]["artifact"]
    return signing.attach_attestation(
        Access(user=world.users[user]), artifact, envelope(key, artifact.sha256)
    )


def test_envelope_endpoint_returns_raw_dsse_per_use_case_visibility(world: Any) -> None:
    att_a, att_b = _attested(world, "a"), _attested(world, "b")
    client = world.client("viewer_a")
    response = client.get(f"/api/v1/attestations/{att_a.pk}/envelope/")
    assert response.status_code == 200
    assert response.json() == att_a.envelope
    assert set(response.json()) == {"payloadType", "payload", "signatures"}
    assert client.get(f"/api/v1/attestations/{att_b.pk}/envelope/").status_code == 404
    assert client.get(f"/api/v1/attestations/{att_b.pk}/").status_code == 404
    ids = [row["id"] for row in client.get("/api/v1/attestations/").json()["results"]]
    assert att_a.pk in ids and att_b.pk not in ids
    auditor = world.client("auditor")
    assert auditor.get(f"/api/v1/attestations/{att_b.pk}/envelope/").status_code == 200
    filtered = auditor.get(f"/api/v1/attestations/?artifact={att_b.artifact_id}").json()
    assert [row["id"] for row in filtered["results"]] == [att_b.pk]


def test_attestations_are_read_only(world: Any) -> None:
    att = _attested(world)
    client = world.client("admin")
    assert client.post("/api/v1/attestations/", {}, format="json").status_code == 405
    assert client.delete(f"/api/v1/attestations/{att.pk}/").status_code == 405


# ---------------------------------------------------------------- the portal's key


def test_portal_key_endpoint_registers_the_key_once(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    client = world.client("outsider")
    response = client.get("/api/v1/portal-key/")
    assert response.status_code == 200
    body = response.json()
    assert body["key_id"] == charter_id(fresh_portal_key)
    assert body["public_key_pem"] == public_pem(fresh_portal_key)
    row = SigningKey.objects.get(key_id=body["key_id"])
    assert row.kind == "portal" and row.owner is None
    events = AuditEvent.objects.filter(object_type="registry.signingkey", object_id=str(row.pk))
    assert events.count() == 1 and events.get().actor_repr == "system"
    client.get("/api/v1/portal-key/")
    assert SigningKey.objects.filter(kind="portal", key_id=body["key_id"]).count() == 1
    assert events.count() == 1


def test_portal_signs_artifact_for_contributor(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    artifact = world.tree["a"]["artifact"]
    url = f"/api/v1/artifacts/{artifact.pk}/sign/"
    body = {"predicate_type": PREDICATE, "predicate": {"reviewed": True}}
    assert world.client("viewer_a").post(url, body, format="json").status_code == 403
    assert world.client("contributor_b").post(url, body, format="json").status_code == 404
    response = world.client("contributor_a").post(url, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["portal_signed"] is True and data["verdict"] == "verified"
    assert data["signer"] == "portal (for contrib_a)"
    assert data["signer_key_id"] == charter_id(fresh_portal_key)
    att = Attestation.objects.get(pk=data["id"])
    stmt = statement_of(att.envelope)
    assert stmt["subject"] == [{"name": artifact.name, "digest": {"sha256": artifact.sha256}}]
    assert stmt["predicate"] == {"reviewed": True}
    assert last_event().action == "verify"


def test_sign_refuses_bad_predicate_naming_the_field(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    url = f"/api/v1/artifacts/{world.tree['a']['artifact'].pk}/sign/"
    client = world.client("contributor_a")
    missing = client.post(url, {"predicate": {}}, format="json")
    assert missing.status_code == 400 and "predicate_type" in missing.json()["errors"]
    wrong = client.post(url, {"predicate_type": PREDICATE, "predicate": [1]}, format="json")
    assert wrong.status_code == 400 and "predicate" in wrong.json()["errors"]
    assert not Attestation.objects.exists()


def test_sign_without_portal_key_is_503(world: Any, settings: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("CHARTER_SIGNING_KEY", raising=False)
    monkeypatch.delenv("CHARTER_SIGNING_KEY_FILE", raising=False)
    settings.PRODUCTION = True
    portal_keys.portal_key.cache_clear()
    try:
        response = world.client("contributor_a").post(
            f"/api/v1/artifacts/{world.tree['a']['artifact'].pk}/sign/",
            {"predicate_type": PREDICATE},
            format="json",
        )
        assert response.status_code == 503
        assert "CHARTER_SIGNING_KEY_FILE" in response.json()["detail"]
        assert world.client("outsider").get("/api/v1/portal-key/").status_code == 503
    finally:
        portal_keys.portal_key.cache_clear()


def test_rotation_keeps_old_portal_keys_for_verification(
    world: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    old, new = new_key(), new_key()
    artifact = world.tree["a"]["artifact"]
    monkeypatch.setenv("CHARTER_SIGNING_KEY", private_pem(old))
    portal_keys.portal_key.cache_clear()
    try:
        att = signing.sign_artifact_as_portal(
            Access(user=world.users["contributor_a"]), artifact, PREDICATE, {}
        )
        retired = tmp_path / "old.pub.pem"
        retired.write_text(public_pem(old))
        monkeypatch.setenv("CHARTER_SIGNING_KEY", private_pem(new))
        monkeypatch.setenv("CHARTER_SIGNING_KEY_PREVIOUS_FILES", str(retired))
        portal_keys.portal_key.cache_clear()
        body = world.client("outsider").get("/api/v1/portal-key/").json()
        assert body["key_id"] == charter_id(new)
        assert [p["key_id"] for p in body["previous"]] == [charter_id(old)]
        assert signing.reverify(att) == (True, "")
        # An envelope signed by the retired key is still accepted on receipt.
        other = f.artifact(world.tree["a"]["model_version"], sha256=SHA)
        again = signing.attach_attestation(
            Access(user=world.users["contributor_a"]), other, envelope(old, SHA)
        )
        assert again.signer_key.kind == "portal"
    finally:
        portal_keys.portal_key.cache_clear()


def test_revoked_portal_key_cannot_sign_and_refusal_is_audited(
    world: Any, fresh_portal_key: Ed25519PrivateKey
) -> None:
    row = signing.ensure_portal_key_registered()
    with pytest.raises(Exception, match="only the key's owner"):
        signing.revoke_signing_key(Access(user=world.users["contributor_a"]), row, reason="x")
    signing.revoke_signing_key(Access(user=world.users["admin"]), row, reason="compromised")
    response = world.client("contributor_a").post(
        f"/api/v1/artifacts/{world.tree['a']['artifact'].pk}/sign/",
        {"predicate_type": PREDICATE},
        format="json",
    )
    assert response.status_code == 400
    assert "was revoked" in response.json()["errors"]["envelope"][0]
    assert not Attestation.objects.exists()
    assert last_event().changes["code"] == "revoked_key"


# ---------------------------------------------------------------- pure functions


class FakeKey:
    def __init__(self, key: Ed25519PrivateKey, revoked_at: Any = None) -> None:
        self.key_id = charter_id(key)
        self.public_key_pem = public_pem(key)
        self.revoked_at = revoked_at
        self.revoked_reason = "lost"


def test_check_envelope_without_database() -> None:
    key = new_key()
    fake = FakeKey(key)
    env = envelope(key, SHA)
    now = timezone.now()
    checked = signing.check_envelope(env, SHA, resolve=lambda k: [fake], at=now)
    assert checked.key is fake and checked.predicate_type == PREDICATE
    assert checked.subject_sha256 == SHA
    # URL-safe, unpadded base64 is valid DSSE too.
    urlsafe = {
        **env,
        "payload": base64.urlsafe_b64encode(base64.b64decode(env["payload"])).decode().rstrip("="),
    }
    assert signing.check_envelope(urlsafe, SHA, resolve=lambda k: [fake], at=now).key is fake
    revoked = FakeKey(key, revoked_at=now)
    with pytest.raises(signing.AttestationRefused) as exc:
        signing.check_envelope(env, SHA, resolve=lambda k: [revoked], at=now)
    assert exc.value.code_name == "revoked_key"
    later = FakeKey(key, revoked_at=now + timedelta(seconds=1))
    assert signing.check_envelope(env, SHA, resolve=lambda k: [later], at=now).key is later


def test_statement_must_be_in_toto_v1() -> None:
    key = new_key()
    fake = FakeKey(key)
    stmt = {"_type": "https://in-toto.io/Statement/v0.1", "subject": [], "predicateType": "x"}
    payload = json.dumps(stmt).encode()
    env = dsse.sign_envelope(payload, fake.key_id, key.sign)
    with pytest.raises(signing.AttestationRefused) as exc:
        signing.check_envelope(env, SHA, resolve=lambda k: [fake], at=timezone.now())
    assert exc.value.code_name == "bad_statement"
    assert "in-toto Statement v1" in exc.value.reason
