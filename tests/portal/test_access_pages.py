from __future__ import annotations

from typing import Any

from django.test import Client

from portal.models import ApiToken
from portal.services import current_level


def browser(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def test_token_page_shows_the_secret_once_and_stores_only_a_hash(world: Any) -> None:
    client = browser(world, "contributor_a")
    response = client.post("/access/tokens/", {"name": "ci", "use_cases": [world.uc_a.pk]})
    body = response.content.decode()
    token = ApiToken.objects.get(user=world.users["contributor_a"])
    secret = body.split('<span class="mono">chtr_')[1].split("<")[0]
    assert token.matches("chtr_" + secret)
    assert secret not in client.get("/access/tokens/").content.decode()
    client.post(f"/access/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_page_offers_only_visible_use_cases(world: Any) -> None:
    client = browser(world, "contributor_a")
    response = client.post("/access/tokens/", {"name": "ci", "use_cases": [world.uc_b.pk]})
    assert response.status_code == 200
    assert not ApiToken.objects.exists()


def test_only_admins_manage_grants(world: Any) -> None:
    uc = world.uc_a
    for who in ("board", "risk", "auditor", "contributor_a"):
        assert browser(world, who).get(f"/access/use-cases/{uc.pk}/").status_code == 403
    client = browser(world, "admin")
    page = client.get(f"/access/use-cases/{uc.pk}/").content.decode()
    assert "contrib_a" in page and "contribute" in page
    response = client.post(
        f"/access/use-cases/{uc.pk}/", {"user": "viewer_a", "level": "contribute"}
    )
    assert response.status_code == 302
    assert current_level(uc, world.users["viewer_a"]) == "contribute"
    client.post(f"/access/use-cases/{uc.pk}/", {"user": "viewer_a", "level": "none"})
    assert current_level(uc, world.users["viewer_a"]) is None
