"""Every page type carries the security headers and a strict Content Security Policy.

Two walks, both as a signed-in admin over the ``world`` fixture:

* every named URL pattern of portal/urls.py (pages, HTMX fragments, admin, API, docs) is
  requested with real object ids where the world has them; whatever the status (200, 302,
  404, 405), the response carries the headers;
* a list of page types that must render (200) proves the walk hit real pages, not 404s.

Production settings (HSTS, Secure cookies) are checked with the settings overridden.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse

from approvals import services as approvals
from portal.permissions import Access
from portal.services import issue_token
from workers import services as worker_services

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_secure(response: Any, url: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.get(name) == value, f"{url} ({response.status_code}): {name}"
    policy = response.get("Content-Security-Policy")
    assert policy, f"{url} ({response.status_code}) has no Content-Security-Policy"
    csp = directives(policy)
    assert csp.get("script-src") == ["'self'"], f"{url}: script-src {csp.get('script-src')}"
    assert "'unsafe-inline'" not in csp.get("script-src", []), url
    assert "'unsafe-eval'" not in csp.get("script-src", []), url
    assert csp.get("object-src") == ["'none'"], url
    assert csp.get("frame-ancestors") == ["'none'"], url
    assert csp.get("default-src") == ["'self'"], url
    if response.get("Content-Type", "").startswith("text/html"):
        body = response.content.decode(errors="replace")
        inline = [s for s in re.findall(r"<script\b[^>]*>", body) if "src=" not in s]
        assert all('type="application/json"' in s for s in inline), f"{url}: inline {inline}"


@pytest.fixture
def objects(world: Any) -> dict[str, Any]:
    tree = world.tree["a"]
    contributor = Access(user=world.users["contributor_a"])
    request = approvals.create_request(contributor, model_version=tree["model_version"])
    incident = worker_services.open_incident(
        Access.system(), tree["deployment"], title="Recall dropped"
    )
    token, _ = issue_token(Access(user=world.users["admin"]), user=world.users["admin"], name="t")
    return {**tree, "request": request, "incident": incident, "token": token}


# URL name (or prefix ending in "-" / ":") -> the object whose pk fills ``pk``-like kwargs.
OBJECT_FOR_NAME = [
    ("api:usecase-", "use_case"),
    ("api:datasetversion-", "dataset_version"),
    ("api:dataset-", "dataset"),
    ("api:modelversion-", "model_version"),
    ("api:model-", "model"),
    ("api:evidence-", "evidence"),
    ("api:artifact-", "artifact"),
    ("api:deployment-", "deployment"),
    ("api:approvalrequest-", "request"),
    ("api:incident-", "incident"),
    ("api:apitoken-", "token"),
    ("api-reference-profile", "dataset_version"),
    ("usecase-", "use_case"),
    ("access-grants", "use_case"),
    ("dataset-create", "use_case"),
    ("model-create", "use_case"),
    ("datasetversion-create", "dataset"),
    ("datasetversion-", "dataset_version"),
    ("dataset-", "dataset"),
    ("modelversion-create", "model"),
    ("modelversion-", "model_version"),
    ("evidence-create", "model_version"),
    ("deployment-create", "model_version"),
    ("approvals:request", "model_version"),
    ("model-", "model"),
    ("deployment", "deployment"),
    ("approvals:", "request"),
    ("incident-", "incident"),
    ("access-token-", "token"),
    ("report", "model_version"),
]


def kwargs_for(name: str, params: list[str], objects: dict[str, Any]) -> dict[str, Any]:
    obj = next((objects[key] for prefix, key in OBJECT_FOR_NAME if name.startswith(prefix)), None)
    values: dict[str, Any] = {}
    for param in params:
        if param == "kind":
            values[param] = "model-version"
        elif param == "format":
            values[param] = "json"
        else:
            values[param] = obj.pk if obj is not None else 1
    return values


def named_patterns(patterns: list[Any], namespace: str = "") -> list[tuple[str, URLPattern]]:
    out = []
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace + (f"{p.namespace}:" if p.namespace else "")
            out.extend(named_patterns(p.url_patterns, ns))
        elif p.name:
            out.append((namespace + p.name, p))
    return out


def every_url(objects: dict[str, Any]) -> dict[str, str]:
    """One concrete URL for each named pattern that can be reversed."""
    urls: dict[str, str] = {}
    for name, pattern in named_patterns(get_resolver().url_patterns):
        if name in urls:
            continue
        converters = getattr(pattern.pattern, "converters", None)
        params = list(converters) if converters else list(pattern.pattern.regex.groupindex)
        try:
            urls[name] = reverse(name, kwargs=kwargs_for(name, params, objects) or None)
        except NoReverseMatch:  # a pattern whose parameters a pk cannot fill (admin's regexes)
            continue
    return urls


def admin_urls(objects: dict[str, Any]) -> list[str]:
    """The admin index, and each registered model's list, add and change pages."""
    urls = [reverse("admin:index")]
    for model, _model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        urls.append(reverse(f"{base}_changelist"))
        urls.append(reverse(f"{base}_add"))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse(f"{base}_change", args=[first.pk]))
    return urls


def api_list_urls() -> list[str]:
    from portal.urls import api

    return [reverse(f"api:{basename}-list") for _prefix, _vs, basename in api.registry]


@pytest.fixture
def admin_client(world: Any) -> Client:
    client = Client()
    client.force_login(world.users["admin"])
    return client


def test_every_url_pattern_answers_with_the_security_headers(
    world: Any, objects: dict[str, Any], admin_client: Client
) -> None:
    urls = every_url(objects)
    assert len(urls) > 150, f"the walk found only {len(urls)} patterns"
    statuses: dict[int, int] = {}
    for name, url in sorted(urls.items()):
        response = admin_client.get(url)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert_secure(response, f"{name} {url}")
    # no error pages among them, and most of the walk reached real pages, not 404s (403: admin
    # pages this non-superuser admin may not use; 405: POST-only actions; 400: API queries
    # without their required parameters)
    assert set(statuses) <= {200, 302, 400, 403, 404, 405}, statuses
    assert statuses[200] >= 90, statuses


def test_admin_and_api_pages_carry_the_headers(world: Any, objects: dict[str, Any]) -> None:
    from tests import factories as f

    platform_admin = Client()
    platform_admin.force_login(f.user("root_user", is_staff=True, is_superuser=True))
    for url in admin_urls(objects):
        response = platform_admin.get(url)
        # add pages of records that only services create (tokens, audit events) are refused
        expected = {200, 403} if url.endswith("/add/") else {200}
        assert response.status_code in expected, (url, response.status_code)
        assert_secure(response, url)
    api = world.client("admin")
    for url in api_list_urls():
        response = api.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert response["Content-Type"].startswith("application/json"), url
        assert_secure(response, url)


PAGE_TYPES = {
    "dashboard": lambda o: "/",
    "use case list": lambda o: reverse("usecase-list"),
    "use case detail": lambda o: o["use_case"].get_absolute_url(),
    "dataset list": lambda o: reverse("dataset-list"),
    "datasheet": lambda o: o["dataset_version"].get_absolute_url(),
    "model list": lambda o: reverse("model-list"),
    "model card": lambda o: o["model_version"].get_absolute_url(),
    "deployment list": lambda o: reverse("deployment-list"),
    "deployment detail": lambda o: o["deployment"].get_absolute_url(),
    "monitoring": lambda o: reverse("deployment-monitoring", args=[o["deployment"].pk]),
    "access tokens": lambda o: reverse("access-tokens"),
    "access grants": lambda o: reverse("access-grants", args=[o["use_case"].pk]),
    "webhooks": lambda o: reverse("access-webhooks"),
    "audit trail": lambda o: reverse("audit-trail"),
    "audit chain": lambda o: reverse("audit-chain"),
    "approval queue": lambda o: reverse("approvals:queue"),
    "approval review": lambda o: reverse("approvals:review", args=[o["request"].pk]),
    "approval policies": lambda o: reverse("approvals:policies"),
    "notifications": lambda o: reverse("approvals:notifications"),
    "lineage": lambda o: reverse("lineage"),
    "lineage impact": lambda o: reverse("lineage-impact-page"),
    "report": lambda o: reverse("report", args=["model-version", o["model_version"].pk]),
    "incidents": lambda o: reverse("incident-list"),
    "incident detail": lambda o: reverse("incident-detail", args=[o["incident"].pk]),
    "retraining": lambda o: reverse("retraining-jobs"),
    "mlflow import": lambda o: reverse("mlflow-import"),
    "admin": lambda o: reverse("admin:index"),
    "api docs": lambda o: reverse("swagger-ui"),
    "redoc": lambda o: reverse("redoc"),
    "api schema": lambda o: reverse("schema"),
    "api json": lambda o: "/api/v1/model-versions/",
}


@pytest.mark.parametrize("page", sorted(PAGE_TYPES))
def test_each_page_type_renders_with_the_headers(
    page: str, objects: dict[str, Any], admin_client: Client
) -> None:
    url = PAGE_TYPES[page](objects)
    response = admin_client.get(url)
    assert response.status_code == 200, (page, url, response.status_code)
    assert_secure(response, url)


@pytest.mark.django_db
def test_login_page_and_anonymous_answers_carry_the_headers(client: Client) -> None:
    for url in ("/login/", "/", "/api/v1/model-versions/", "/no-such-page/"):
        response = client.get(url)
        assert response.status_code in (200, 302, 401, 403, 404), url
        assert_secure(response, url)


@pytest.mark.django_db
def test_production_settings_turn_on_hsts_and_secure_cookies(client: Client, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_SSL_REDIRECT = True
    # plain http is redirected to https
    response = client.get("/login/")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    response = client.get("/login/", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf = response.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax" and csrf["httponly"]
    from tests import factories as f

    f.user("hsts_user")
    response = client.post(
        "/login/", {"username": "hsts_user", "password": "pw-hsts_user"}, secure=True
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
