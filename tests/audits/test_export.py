from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from audits import services
from audits.models import AuditEvent
from portal import keys
from tests import factories as f
from tests.audits.helpers import TOOL, rewrite_member, run_offline


def _export(tmp_path: Path) -> tuple[Path, int]:
    f.use_case(name="Zürich — “crédit” 😀")
    f.use_case()
    services.create_checkpoint()
    f.dataset(f.use_case())
    services.create_checkpoint()
    out = tmp_path / "audit.zip"
    call_command("export_audit", out=str(out))
    return out, AuditEvent.objects.count()


@pytest.mark.django_db
def test_export_contents_and_its_own_event(tmp_path: Path) -> None:
    out, total = _export(tmp_path)
    last = AuditEvent.objects.order_by("-seq").first()
    assert last.action == "export" and last.channel == "command"
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == [
            "checkpoints.json",
            "events.jsonl",
            "portal_public_keys.pem",
            "segments.json",
        ]
        assert json.loads(archive.read("segments.json")) == []  # nothing archived yet
        lines = archive.read("events.jsonl").decode().splitlines()
        checkpoints = json.loads(archive.read("checkpoints.json"))
        pem = archive.read("portal_public_keys.pem").decode()
    assert len(lines) == total
    stored = dict(AuditEvent.objects.values_list("seq", "payload"))
    for line in lines:
        row = json.loads(line)
        assert set(row) == {"seq", "prev_hash", "hash", "payload"}
        assert row["payload"] == stored[row["seq"]]  # the exact stored text
    assert json.loads(lines[-1])["seq"] == last.seq  # the export event is included
    assert len(checkpoints) == 2
    assert keys.portal_key().public_pem.strip() in pem and "PRIVATE" not in pem


@pytest.mark.django_db
def test_offline_checker_passes_a_clean_export(tmp_path: Path) -> None:
    out, total = _export(tmp_path)
    proc = run_offline(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"OK {total} events, 2 checkpoints")


def _flip_in_payload(data: bytes) -> bytes:
    """Change one byte inside the third event's payload text."""
    lines = data.split(b"\n")
    i = lines[2].index(b'\\"action\\":\\"') + len(b'\\"action\\":\\"')
    lines[2] = lines[2][:i] + bytes([lines[2][i] ^ 1]) + lines[2][i + 1 :]
    return b"\n".join(lines)


@pytest.mark.django_db
def test_offline_checker_fails_on_one_changed_byte_of_events(tmp_path: Path) -> None:
    out, _ = _export(tmp_path)
    rewrite_member(out, "events.jsonl", _flip_in_payload)
    proc = run_offline(out)
    assert proc.returncode == 1
    assert "FAILED at seq 3:" in proc.stdout


@pytest.mark.django_db
def test_offline_checker_fails_on_one_changed_hash_digit(tmp_path: Path) -> None:
    out, _ = _export(tmp_path)

    def change(data: bytes) -> bytes:
        lines = data.split(b"\n")
        i = lines[4].index(b'"hash": "') + len(b'"hash": "')
        digit = b"0" if lines[4][i : i + 1] != b"0" else b"1"
        lines[4] = lines[4][:i] + digit + lines[4][i + 1 :]
        return b"\n".join(lines)

    rewrite_member(out, "events.jsonl", change)
    proc = run_offline(out)
    assert proc.returncode == 1
    assert "FAILED at seq 5:" in proc.stdout


@pytest.mark.django_db
def test_offline_checker_fails_on_one_changed_byte_of_checkpoints(tmp_path: Path) -> None:
    out, _ = _export(tmp_path)
    with zipfile.ZipFile(out) as archive:
        first_seq = json.loads(archive.read("checkpoints.json"))[0]["seq"]

    def change(data: bytes) -> bytes:
        i = data.index(b'"sig": "') + len(b'"sig": "') + 5
        replacement = b"A" if data[i : i + 1] != b"A" else b"B"
        return data[:i] + replacement + data[i + 1 :]

    rewrite_member(out, "checkpoints.json", change)
    proc = run_offline(out)
    assert proc.returncode == 1
    assert f"FAILED at seq {first_seq}:" in proc.stdout
    assert "signature" in proc.stdout


@pytest.mark.django_db
def test_offline_checker_requires_canonical_payloads(tmp_path: Path) -> None:
    """A payload re-serialised non-canonically (with a matching hash) is still rejected."""
    out, _ = _export(tmp_path)

    def change(data: bytes) -> bytes:
        rows = [json.loads(line) for line in data.decode().splitlines()]
        prev = "0" * 64
        for row in rows:
            if row["seq"] == 2:
                row["payload"] = json.dumps(json.loads(row["payload"]), sort_keys=False)
            row["prev_hash"] = prev
            row["hash"] = services.chain_hash(prev, row["payload"].encode())
            prev = row["hash"]
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()

    rewrite_member(out, "events.jsonl", change)
    proc = run_offline(out)
    assert proc.returncode == 1
    assert "FAILED at seq 2: payload is not in RFC 8785 canonical form" in proc.stdout


def test_offline_checker_imports_nothing_from_charter() -> None:
    source = TOOL.read_text()
    for name in ("portal", "audits", "registry", "django", "rfc8785"):
        assert f"import {name}" not in source and f"from {name}" not in source
    assert sys.executable  # runs under the same interpreter (cryptography available)
