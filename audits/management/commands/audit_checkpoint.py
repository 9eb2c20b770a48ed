from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audits.context import audit_context
from audits.services import create_checkpoint


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit chain head (no-op if nothing changed)."

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_context(channel="command"):
            checkpoint = create_checkpoint()
        if checkpoint is None:
            self.stdout.write("no new events since the last checkpoint")
        else:
            self.stdout.write(f"checkpoint at seq {checkpoint.seq}: {checkpoint.hash}")
