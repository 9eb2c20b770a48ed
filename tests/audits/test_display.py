"""Audit events as HTML (audits/display.py) give exactly the markup of the templates they
replaced, for every kind of change, escaping included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.template import Context, Template

from audits.display import change_html, trail_row_html
from audits.models import AuditEvent

# The template includes these functions replaced (includes/change.html and the audit
# trail's row), kept here as the reference the functions must reproduce.
CHANGE_TEMPLATE = (
    '{% if e.action == "create" %}created{% elif e.action == "transition" %}'
    "{{ e.changes.before.status }} &rarr; {{ e.changes.after.status }}"
    '{% if e.changes.reason %} <span class="subtitle">({{ e.changes.reason }})</span>'
    '{% endif %}{% elif e.action == "update" %}<span class="mono">'
    "{% for k in e.changes.after %}{{ k }}{% if not forloop.last %}, {% endif %}{% endfor %}"
    '</span>{% elif e.action == "grant" or e.action == "revoke" %}'
    "{% firstof e.changes.user e.changes.group %}: "
    '{{ e.changes.before|default:"none" }} &rarr; {{ e.changes.after|default:"none" }}'
    '{% elif e.changes %}<span class="mono">{{ e.changes|truncatechars:80 }}</span>{% endif %}'
)
ROW_TEMPLATE = (
    '<tr><td class="num">{{ e.seq }}</td><td class="nowrap">'
    '{{ e.created_at|date:"Y-m-d H:i:s" }}</td>'
    '<td><a href="?actor={{ e.actor_repr|urlencode }}">{{ e.actor_repr }}</a></td>'
    '<td><a href="?action={{ e.action }}"><span class="badge status">{{ e.action }}</span></a>'
    '</td><td><a href="?object_type={{ e.object_type|urlencode }}&amp;object_id='
    '{{ e.object_id|urlencode }}">{{ e.object_type }} {{ e.object_id }}</a><br>'
    '<span class="subtitle">{{ e.object_repr|truncatechars:60 }}</span></td>'
    "<td>" + CHANGE_TEMPLATE + "</td>"
    "<td>{{ e.channel }}{% if e.client_ip %}<br>"
    '<span class="subtitle">{{ e.client_ip }}</span>{% endif %}</td>'
    '<td class="mono" title="{{ e.hash }}">{{ e.hash|truncatechars:12 }}</td></tr>'
)

HOSTILE = "<script>alert(\"x\")</script> & 'q'"
CHANGES: list[tuple[str, Any]] = [
    ("create", {"after": {"name": "x"}}),
    ("transition", {"before": {"status": "draft"}, "after": {"status": "in_review"}}),
    ("transition", {"before": {"status": HOSTILE}, "after": {}, "reason": HOSTILE}),
    ("transition", {"before": "not a dict", "after": None}),
    ("update", {"before": {"a": 1}, "after": {"purpose": "p", HOSTILE: 2, "risk_tier": "h"}}),
    ("update", {"after": {}}),
    ("update", {}),
    ("grant", {"user": "alice", "before": None, "after": "contributor"}),
    ("grant", {"group": HOSTILE, "before": ["viewer"], "after": ["viewer", "owner"]}),
    ("revoke", {"user": "", "group": "board", "before": "viewer", "after": ""}),
    ("login", {}),
    ("export", {"filters": {"actor": HOSTILE, "q": "x" * 120}}),
    ("view", {"reason": "short"}),
    ("delete", None),
]


def _event(action: str, changes: Any, i: int) -> AuditEvent:
    return AuditEvent(
        seq=1000 + i,
        created_at=datetime(2026, 12, 4, 19, 5, i, 123456, tzinfo=UTC),
        actor_repr=["alice", HOSTILE, "pipeline token #3 (ci/cd)", "", "zoë & co"][i % 5],
        action=action,
        object_type=["registry.usecase", "audits.auditevent", "a b/c"][i % 3],
        object_id=["42", "", "7?x=1&y"][i % 3],
        object_repr=[HOSTILE * 3, "Credit scoring", "é" * 61, ""][i % 4],
        changes=changes,
        channel=["web", "api", ""][i % 3],
        client_ip=["", "10.0.0.7", "::1"][i % 3],
        hash=f"{i:02d}" + "ab" * 31,
    )


EVENTS = [_event(action, changes, i) for i, (action, changes) in enumerate(CHANGES)]


@pytest.mark.parametrize("event", EVENTS, ids=[f"{e.action}-{e.seq}" for e in EVENTS])
def test_change_and_row_markup_equal_the_templates(event: AuditEvent) -> None:
    context = Context({"e": event})
    assert change_html(event) == Template(CHANGE_TEMPLATE).render(context)
    assert trail_row_html(event) == Template(ROW_TEMPLATE).render(context)


def test_nothing_a_user_wrote_reaches_the_page_unescaped() -> None:
    html = "".join(trail_row_html(e) for e in EVENTS)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
