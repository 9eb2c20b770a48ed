"""Shared helpers for the audit chain tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "verify_audit_export.py"


def run_offline(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the standalone export checker in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, str(TOOL), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
    )


def rewrite_member(path: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """Rewrite one member of a zip in place."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = change(members[name])
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def tamper(sql: str, params: list[object]) -> None:
    """Run SQL on audits_auditevent with the append-only trigger briefly disabled."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE audits_auditevent DISABLE TRIGGER audits_auditevent_append_only"
        )
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute(
                "ALTER TABLE audits_auditevent ENABLE TRIGGER audits_auditevent_append_only"
            )


def head_seq() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(seq), 0) FROM audits_auditevent")
        return int(cursor.fetchone()[0])
