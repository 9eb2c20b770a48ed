from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audits.context import audit_context
from audits.services import export_chain


class Command(BaseCommand):
    help = "Export the audit chain, checkpoints and public keys to a zip for offline checking."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="path of the zip file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_context(channel="command"):
            events, checkpoints = export_chain(options["out"])
        self.stdout.write(
            f"exported {events} events, {checkpoints} checkpoints to {options['out']}"
        )
