from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audits.archive import ArchiveError, archive_segment
from audits.context import audit_context
from audits.models import Checkpoint


class Command(BaseCommand):
    help = (
        "Archive the oldest audit events (up to a signed checkpoint) to a signed segment file "
        "and remove them from the table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--through-seq", type=int, help="last seq to archive")
        group.add_argument(
            "--through-checkpoint",
            action="store_true",
            help="archive up to the newest signed checkpoint",
        )
        parser.add_argument("--dir", help="archive directory (default AUDIT_ARCHIVE_DIR)")

    def handle(self, *args: Any, **options: Any) -> None:
        through = options["through_seq"]
        if options["through_checkpoint"]:
            through = Checkpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
            if through is None:
                raise CommandError("no signed checkpoint yet: run audit_checkpoint first")
        try:
            with audit_context(channel="command"):
                segment = archive_segment(through_seq=through, directory=options["dir"])
        except ArchiveError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"archived seq {segment.first_seq}-{segment.last_seq} "
            f"({segment.events} events) to {segment.file_name}"
        )
