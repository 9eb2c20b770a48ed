from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audits.verify import verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain and its signed checkpoints (exit 1 if broken)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--fast", action="store_true", help="skip comparing payloads with the columns"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_chain(deep=not options["fast"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
        if not result.ok:
            raise CommandError(
                f"broken at seq {result.first_bad_seq}: {result.reason}", returncode=1
            )
        if not options["json"]:
            self.stdout.write(
                f"chain intact: {result.length} events, {result.checked_checkpoints} checkpoints"
            )
