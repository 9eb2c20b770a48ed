from __future__ import annotations

from typing import Any

from portal.models import WebhookSubscription


def subscribe(
    world: Any, who: str, url: str, events: list[str], use_case: Any = None
) -> tuple[WebhookSubscription, str]:
    """Create a subscription through the API as ``who``; returns it and its secret."""
    body: dict[str, Any] = {"url": url, "events": events, "name": f"{who} hook"}
    body["use_case"] = use_case.pk if use_case is not None else None
    response = world.client(who).post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    return WebhookSubscription.objects.get(pk=data["id"]), data["secret"]
