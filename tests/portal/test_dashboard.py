"""The dashboard's figures: what the inventory holds by risk and status, and what awaits
review — counted over what the user may see."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from portal import roles
from portal.permissions import Access
from portal.services import grant_access
from registry import services
from tests import factories as f

SYSTEM = Access.system()


def _stats(html: str) -> dict[str, int]:
    found = re.findall(r'<span class="n">(\d+)</span><span class="l">([^<]+)</span>', html)
    return {label: int(n) for n, label in found}


def _figures(*, total: int, high_risk: int, in_production: int) -> dict[str, int]:
    return {
        "use cases in the inventory": total,
        "high or unacceptable risk": high_risk,
        "in production": in_production,
        "periodic reviews overdue": 0,
    }


def _awaiting(html: str) -> tuple[int, int]:
    badge = re.search(r'Awaiting review <span class="badge status-in_review">(\d+)</span>', html)
    section = html[html.index('id="await-h"') : html.index('id="dep-h"')]
    assert badge is not None
    return int(badge.group(1)), section.count("<tr><td><a href=")


def _to_production(uc: Any) -> None:
    for status in ("assessed", "approved", "in_production"):
        services.transition_use_case(SYSTEM, uc, status, reason="dashboard test")


def _in_review(n: int, uc: Any) -> None:
    model = f.model(uc)
    for _ in range(n):
        services.transition_model_version(SYSTEM, f.model_version(model), "in_review")


@pytest.mark.django_db
def test_the_figures_count_what_each_user_may_see() -> None:
    mine = f.use_case(risk_tier="high")
    _to_production(mine)
    others = [f.use_case(risk_tier=t) for t in ("unacceptable", "limited", "minimal")]
    _to_production(others[2])
    _in_review(3, mine)
    _in_review(9, others[0])
    board = Client()
    board.force_login(f.user(roles=(roles.BOARD,)))
    html = board.get("/").content.decode()
    assert _stats(html) == _figures(total=4, high_risk=2, in_production=2)
    assert _awaiting(html) == (12, 8)  # counted beyond the eight listed
    contributor = f.user(roles=(roles.CONTRIBUTOR,))
    grant_access(SYSTEM, mine, contributor, "contribute")
    client = Client()
    client.force_login(contributor)
    html = client.get("/").content.decode()
    assert _stats(html) == _figures(total=1, high_risk=1, in_production=1)
    assert _awaiting(html) == (3, 3)
