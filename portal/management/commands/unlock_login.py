"""Lift a login lockout before its cool-off ends (an audited ``unlock`` event)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audits.context import audit_context
from portal.security import unlock_login


class Command(BaseCommand):
    help = "Unlock a username locked out by repeated failed logins (all addresses, or one)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username", help="the username that is locked out")
        parser.add_argument("--ip", default="", help="only the lockout from this address")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_context(channel="command"):
            cleared = unlock_login(
                actor=None, username=options["username"], ip_address=options["ip"]
            )
        where = f" from {options['ip']}" if options["ip"] else ""
        self.stdout.write(f"unlocked {options['username']}{where} ({cleared} lockout records)")
