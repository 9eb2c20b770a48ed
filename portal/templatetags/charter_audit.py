"""``{% load charter_audit %}``: audit events as HTML (audits/display.py).

``{{ event|change }}`` is what the event changed; ``{{ events|trail_rows }}`` the audit
trail's table rows.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from audits.display import change_html, trail_rows_html
from audits.models import AuditEvent

register = template.Library()


@register.filter(name="change", is_safe=True)
def change_filter(event: AuditEvent) -> SafeString:
    return change_html(event)


@register.filter(name="trail_rows", is_safe=True)
def trail_rows_filter(events: Any) -> SafeString:
    return trail_rows_html(events)
