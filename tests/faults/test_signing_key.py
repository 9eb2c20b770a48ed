"""The portal's signing key file is missing, a directory, or not a private key: the portal
still starts and says why at start-up and on every page; signing fails with a 503 naming the
problem, nothing half-written; verifying what was signed before (the public keys are in the
database) still works, audit checkpoints included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from charter_client import Client, ServerError
from django.test import Client as BrowserClient

from audits.models import AuditEvent, Checkpoint
from audits.services import create_checkpoint
from portal import keys as portal_keys
from portal.permissions import Access
from portal.services import issue_token
from registry import signing
from registry.models import Attestation
from tests import worker
from tests.faults.servers import PortalServer, charter_env, manage, run_script
from tests.registry.test_signing import PREDICATE, new_key, private_pem

REVERIFY = """
from audits.verify import verify_chain
from registry import signing
from registry.models import Attestation
result = verify_chain()
print(json.dumps({
    "attestations": [signing.reverify(a) for a in Attestation.objects.order_by("pk")],
    "chain": [result.ok, result.reason, result.checked_checkpoints],
}))
"""


def _bad_key(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A key path of the given kind of brokenness, and the reason the portal must give."""
    path = tmp_path / "portal.pem"
    if kind == "missing":
        return path, "No such file or directory"
    if kind == "directory":  # unreadable even for root (chmod 000 is not)
        path.mkdir()
        return path, "Is a directory"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    return path, "is not a readable PEM private key"


@pytest.fixture
def signed_before(world: Any, monkeypatch: pytest.MonkeyPatch) -> Attestation:
    """While the portal still had its key: a portal-signed artifact and a signed checkpoint."""
    monkeypatch.setenv("CHARTER_SIGNING_KEY", private_pem(new_key()))
    portal_keys.portal_key.cache_clear()
    att = signing.sign_artifact_as_portal(
        Access(user=world.users["contributor_a"]), world.tree["a"]["artifact"], PREDICATE, {}
    )
    assert create_checkpoint() is not None
    monkeypatch.delenv("CHARTER_SIGNING_KEY")
    portal_keys.portal_key.cache_clear()
    yield att
    portal_keys.portal_key.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_missing_key_file_portal_serves_refuses_to_sign_and_still_verifies(
    world: Any, signed_before: Attestation, tmp_path: Path, log_dir: Path
) -> None:
    path, reason = _bad_key("missing", tmp_path)
    env = charter_env(
        DATABASE_URL=worker.test_database_url(),
        CHARTER_VAR_DIR=str(tmp_path / "var"),
        CHARTER_SIGNING_KEY_FILE=str(path),
        CELERY_BROKER_URL="memory://",
    )
    server = PortalServer(env, log_dir / "signing-key-portal.log", threads=2)
    server.start()
    try:
        _, token = issue_token(Access.system(), user=world.users["contributor_a"], name="t")
        client = Client(server.url, token, retries=0)
        # the portal started and said at once what is wrong
        assert f"The portal signing key is unavailable: CHARTER_SIGNING_KEY_FILE={path}" in (
            server.output()
        )
        # its public key cannot be served, and signing is refused with the reason
        with pytest.raises(ServerError) as refused:
            client.portal_key()
        assert refused.value.status == 503 and reason in refused.value.detail
        other = world.tree["b"]["artifact"]
        _, token_b = issue_token(Access.system(), user=world.users["contributor_b"], name="t")
        events = AuditEvent.objects.count()
        with pytest.raises(ServerError) as refused:
            Client(server.url, token_b, retries=0).post(
                f"artifacts/{other.pk}/sign/", {"predicate_type": PREDICATE}
            )
        assert refused.value.status == 503, refused.value
        assert str(path) in refused.value.detail and reason in refused.value.detail
        assert not Attestation.objects.filter(artifact=other).exists()
        assert AuditEvent.objects.count() == events
        # reading still works, with the stored verdict
        listed = client.get(f"artifacts/{signed_before.artifact_id}/attestations/")
        rows = listed["results"] if isinstance(listed, dict) else listed
        assert [r["verdict"] for r in rows] == ["verified"]
    finally:
        server.stop()

    # re-verification uses the public keys in the database: the portal-signed attestation and
    # the chain's checkpoint, signed with the key that is now gone, still verify
    checked = run_script(REVERIFY, env)
    assert checked["attestations"] == [[True, ""]]
    assert checked["chain"] == [True, "", 1], checked
    result = manage("verify_audit", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # a new checkpoint is refused with the reason (and nothing is written)
    checkpoints = Checkpoint.objects.count()
    result = manage("audit_checkpoint", env=env)
    assert result.returncode != 0
    assert reason in result.stderr and "CHARTER_SIGNING_KEY_FILE" in result.stderr, result.stderr
    assert Checkpoint.objects.count() == checkpoints


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["directory", "invalid"])
def test_unreadable_key_is_reported_at_start_and_on_every_page(
    world: Any, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, reason = _bad_key(kind, tmp_path)
    env = charter_env(
        DATABASE_URL=worker.test_database_url(),
        CHARTER_VAR_DIR=str(tmp_path / "var"),
        CHARTER_SIGNING_KEY_FILE=str(path),
    )
    result = manage("check", env=env)  # what `runserver` and every command do first
    assert result.returncode == 0, result.stderr
    assert f"The portal signing key is unavailable: CHARTER_SIGNING_KEY_FILE={path}" in (
        result.stderr
    )
    assert reason in result.stderr and "verifying existing signatures still works" in (
        result.stderr
    )
    monkeypatch.setenv("CHARTER_SIGNING_KEY_FILE", str(path))
    portal_keys.portal_key.cache_clear()
    try:
        browser = BrowserClient()
        browser.force_login(world.users["board"])
        page = browser.get("/").content.decode()
        assert "The portal signing key is unavailable" in page and reason in page
        # signing on behalf of a user is refused as unavailable, naming the problem
        api = world.client("contributor_a")
        response = api.post(
            f"/api/v1/artifacts/{world.tree['a']['artifact'].pk}/sign/",
            json.dumps({"predicate_type": PREDICATE}),
            content_type="application/json",
        )
        assert response.status_code == 503 and reason in response.json()["detail"]
    finally:
        portal_keys.portal_key.cache_clear()
