"""Single sign-on through OpenID Connect (mozilla-django-oidc), on when OIDC_* are set."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, answering only the SSO callback.

    Password logins call every backend; this one steps aside unless the callback view called
    it (it passes ``nonce``), so a ``?code=`` on the login form never reaches the IdP. Users
    get the IdP's ``preferred_username`` when it is a valid username (readable audit trails).
    """

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or "nonce" not in kwargs:
            return None
        return super().authenticate(request, **kwargs)

    def get_username(self, claims: dict[str, Any]) -> str:
        preferred = str(claims.get("preferred_username") or "")
        if re.fullmatch(r"[\w.@+-]{1,150}", preferred):
            return preferred
        return super().get_username(claims)
