from typing import Any

from rest_framework.test import APIClient

from portal.permissions import Access
from portal.services import issue_token


def test_every_issued_token_authenticates_even_with_underscores_in_the_secret(world: Any) -> None:
    """Regression: secrets are URL-safe base64, which contains '_' about half the time."""
    user = world.users["contributor_a"]
    secrets = [issue_token(Access.system(), user=user, name=f"t{i}")[1] for i in range(40)]
    assert any("_" in s.split("_", 2)[2] for s in secrets)
    for secret in secrets:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert client.get("/api/v1/use-cases/").status_code == 200, secret
