from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from audits import services
from audits.models import AuditEvent, Checkpoint
from audits.tasks import make_checkpoint
from audits.verify import CHECKPOINT_PAYLOAD_TYPE, verify_chain
from portal import dsse, keys
from tests import factories as f
from tests.audits.helpers import head_seq, tamper


@pytest.mark.django_db
def test_checkpoint_signs_the_head_before_its_own_event() -> None:
    f.use_case()
    head = AuditEvent.objects.order_by("-seq").first()
    cp = services.create_checkpoint()
    assert cp is not None
    assert (cp.seq, cp.hash) == (head.seq, head.hash)
    assert cp.key_id == keys.portal_key().key_id
    verified = dsse.verify_envelope(
        cp.envelope,
        {cp.key_id: keys.portal_key().public}.get,
        expected_payload_type=CHECKPOINT_PAYLOAD_TYPE,
    )
    body = json.loads(verified.payload)
    assert body["seq"] == head.seq and body["hash"] == head.hash and body["time"].endswith("Z")
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.seq == head.seq + 1
    assert event.action == "checkpoint"
    assert event.object_type == "audits.checkpoint" and event.object_id == str(cp.pk)
    result = verify_chain()
    assert result.ok and result.checked_checkpoints == 1


@pytest.mark.django_db
def test_checkpoint_is_a_noop_when_the_head_has_not_moved(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert services.create_checkpoint() is None  # empty chain
    f.use_case()
    assert services.create_checkpoint() is not None
    length = head_seq()
    assert services.create_checkpoint() is None  # only its own event since
    assert make_checkpoint.delay().get() is None
    call_command("audit_checkpoint")
    assert "no new events" in capsys.readouterr().out
    assert head_seq() == length and Checkpoint.objects.count() == 1
    f.use_case()
    assert make_checkpoint.delay().get() == head_seq() - 1
    assert Checkpoint.objects.count() == 2
    call_command("verify_audit")
    assert f"chain intact: {head_seq()} events, 2 checkpoints" in capsys.readouterr().out


def test_hourly_beat_schedule() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-checkpoint-hourly"]
    assert entry["task"] == "audits.tasks.make_checkpoint"
    assert entry["schedule"] == 3600.0


def _tamper(cp: Checkpoint) -> None:
    """Rewrite a checkpoint row as an attacker with DDL rights would (trigger off, then on)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE audits_checkpoint DISABLE TRIGGER audits_checkpoint_append_only"
        )
        cp.save()
        cursor.execute("ALTER TABLE audits_checkpoint ENABLE TRIGGER audits_checkpoint_append_only")


def _resign(cp: Checkpoint, private: Ed25519PrivateKey, body: dict[str, Any] | None = None) -> None:
    payload = (
        json.dumps(body, separators=(",", ":")).encode()
        if body is not None
        else base64.b64decode(cp.envelope["payload"])
    )
    kid = keys.key_id(private.public_key())
    cp.envelope = dsse.sign_envelope(payload, kid, private.sign, CHECKPOINT_PAYLOAD_TYPE)
    _tamper(cp)


@pytest.mark.django_db
def test_forged_checkpoint_signature_is_detected() -> None:
    f.use_case()
    cp = services.create_checkpoint()
    sig = bytearray(base64.b64decode(cp.envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    cp.envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    _tamper(cp)
    result = verify_chain()
    assert not result.ok
    assert result.first_bad_seq == cp.seq
    assert "signature" in result.reason
    with pytest.raises(CommandError, match=f"broken at seq {cp.seq}: checkpoint signature"):
        call_command("verify_audit", "--fast")


@pytest.mark.django_db
def test_checkpoint_signed_by_an_unknown_key_is_rejected() -> None:
    f.use_case()
    cp = services.create_checkpoint()
    _resign(cp, Ed25519PrivateKey.generate())
    result = verify_chain()
    assert result.first_bad_seq == cp.seq
    assert "no signature by a known key" in result.reason


@pytest.mark.django_db
def test_checkpoint_by_a_retired_key_still_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    retired = Ed25519PrivateKey.generate()
    pem = tmp_path / "retired.pub.pem"
    pem.write_text(keys.public_pem(retired.public_key()))
    f.use_case()
    cp = services.create_checkpoint()
    _resign(cp, retired)
    assert not verify_chain().ok
    monkeypatch.setenv("CHARTER_SIGNING_KEY_PREVIOUS_FILES", str(pem))
    assert verify_chain().ok


@pytest.mark.django_db
def test_checkpoint_over_a_different_hash_is_detected() -> None:
    f.use_case()
    cp = services.create_checkpoint()
    f.use_case()
    # A validly signed checkpoint whose hash is not the row's (e.g. a rewritten history).
    cp.hash = "f" * 64
    _tamper(cp)
    result = verify_chain()
    assert result.first_bad_seq == cp.seq
    assert "does not match" in result.reason


@pytest.mark.django_db
def test_rewritten_history_is_caught_by_the_checkpoint() -> None:
    """Rewrite the tail consistently (valid hashes): only the signed checkpoint betrays it."""
    f.use_case()
    cp = services.create_checkpoint()
    tamper(
        'UPDATE audits_auditevent SET payload = replace(payload, \'"time":"2\', '
        '\'"time":"1\') WHERE seq = %s',
        [cp.seq],
    )
    # Recompute every hash from cp.seq onwards so the chain itself links again.
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "payload"))
    prev = "0" * 64
    for seq, _, payload in rows:
        new = services.chain_hash(prev, payload.encode())
        tamper(
            "UPDATE audits_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s",
            [prev, new, seq],
        )
        prev = new
    result = verify_chain()
    assert not result.ok
    assert result.first_bad_seq == cp.seq
    assert "checkpoint" in result.reason


@pytest.mark.django_db
def test_checkpoint_beyond_a_truncated_tail_is_detected() -> None:
    f.use_case()
    f.use_case()
    cp = services.create_checkpoint()
    tamper("DELETE FROM audits_auditevent WHERE seq >= %s", [cp.seq])
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == cp.seq
    assert "beyond" in result.reason


def test_private_key_never_exported() -> None:
    assert "PRIVATE" not in keys.portal_key().public_pem
    assert serialization.load_pem_public_key(keys.portal_key().public_pem.encode())
