from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audits.verify import verify_chain
from tests import factories as f
from tests.audits.helpers import head_seq, run_offline, tamper


def _events(n_use_cases: int = 6) -> int:
    for _ in range(n_use_cases):
        uc = f.use_case()
        f.dataset(uc)
    return head_seq()


@pytest.mark.django_db
def test_clean_chain_verifies_in_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    length = _events()
    for deep in (True, False):
        result = verify_chain(deep=deep, batch_size=3)  # several keyset batches
        assert result.ok, result
        assert result.length == length
        assert result.first_bad_seq is None
    call_command("verify_audit")
    assert f"chain intact: {length} events, 0 checkpoints" in capsys.readouterr().out
    call_command("verify_audit", "--json", "--fast")
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["length"] == length


@pytest.mark.django_db
def test_empty_chain_is_intact() -> None:
    result = verify_chain()
    assert result.ok and result.length == 0 and result.head_hash == "0" * 64


@pytest.mark.django_db
def test_altered_middle_payload_is_found(tmp_path: Path) -> None:
    length = _events()
    middle = length // 2
    tamper(
        'UPDATE audits_auditevent SET payload = replace(payload, \'"time":"2\', '
        '\'"time":"1\') WHERE seq = %s',
        [middle],
    )
    result = verify_chain(batch_size=4)
    assert not result.ok
    assert result.first_bad_seq == middle
    assert "hash" in result.reason
    assert result.length == middle - 1
    with pytest.raises(CommandError, match=f"broken at seq {middle}: hash"):
        call_command("verify_audit")
    with pytest.raises(CommandError, match=f"broken at seq {middle}"):
        call_command("verify_audit", "--fast")

    out = tmp_path / "export.zip"
    call_command("export_audit", out=str(out))
    proc = run_offline(out)
    assert proc.returncode == 1, proc.stdout
    assert f"seq {middle}:" in proc.stdout


@pytest.mark.django_db
def test_rehashed_row_breaks_the_next_link() -> None:
    """Rewriting a row and its hash consistently still breaks the following prev_hash."""
    length = _events()
    middle = length // 2
    tamper(
        'UPDATE audits_auditevent SET payload = replace(payload, \'"time":"2\', '
        '\'"time":"1\') WHERE seq = %s',
        [middle],
    )
    tamper(
        "UPDATE audits_auditevent SET hash = encode(sha256(convert_to(prev_hash || payload, "
        "'UTF8')), 'hex') WHERE seq = %s",
        [middle],
    )
    result = verify_chain()
    assert result.first_bad_seq == middle + 1
    assert "prev_hash" in result.reason


@pytest.mark.django_db
def test_deleted_middle_row_gap_is_found(tmp_path: Path) -> None:
    length = _events()
    middle = length // 2
    tamper("DELETE FROM audits_auditevent WHERE seq = %s", [middle])
    result = verify_chain(deep=False)
    assert not result.ok
    assert result.first_bad_seq == middle
    assert "missing" in result.reason
    with pytest.raises(CommandError, match=f"broken at seq {middle}: seq {middle} is missing"):
        call_command("verify_audit")

    out = tmp_path / "export.zip"
    call_command("export_audit", out=str(out))
    proc = run_offline(out)
    assert proc.returncode == 1
    assert f"seq {middle}:" in proc.stdout


@pytest.mark.django_db
def test_deep_mode_compares_payload_with_columns() -> None:
    length = _events()
    middle = length // 2
    tamper("UPDATE audits_auditevent SET actor_repr = 'mallory' WHERE seq = %s", [middle])
    assert verify_chain(deep=False).ok  # payload and hashes are untouched
    result = verify_chain(deep=True)
    assert result.first_bad_seq == middle
    assert "actor" in result.reason and "mallory" in result.reason
    with pytest.raises(CommandError, match=f"broken at seq {middle}: payload actor"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_fast_mode_is_not_fooled_by_a_dropped_unique_index() -> None:
    """Delete one event and duplicate another: the seq count still matches, but fast mode
    notices the missing unique index and walks the rows, which names the gap."""
    length = _events()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audits_auditevent DROP CONSTRAINT audits_auditevent_seq_key")
    tamper("DELETE FROM audits_auditevent WHERE seq = %s", [4])
    tamper(
        "INSERT INTO audits_auditevent (seq, created_at, actor_id, actor_repr, action, "
        "object_type, object_id, object_repr, changes, request_id, client_ip, user_agent, "
        "channel, payload, prev_hash, hash) SELECT seq, created_at, actor_id, actor_repr, "
        "action, object_type, object_id, object_repr, changes, request_id, client_ip, "
        "user_agent, channel, payload, prev_hash, hash FROM audits_auditevent WHERE seq = %s",
        [length],
    )
    result = verify_chain(deep=False)
    assert not result.ok
    assert result.first_bad_seq == 4 and "missing" in result.reason
