from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.generic.base import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.routers import DefaultRouter

from approvals import api as approval_api
from lineage.api import views as lineage_views
from portal import health, metrics, security, views
from portal.api import views as api_views
from registry.api.urls import router as registry_router
from workers import api as workers_api
from workers import retraining_api
from workers.urls import api_urlpatterns as workers_api_urls

REDOC_CSP = {
    **settings.SECURE_CSP,
    "worker-src": [CSP.SELF, "blob:"],
    "img-src": [CSP.SELF, "data:", "https://cdn.redoc.ly"],  # its "Redocly" footer logo
}

# Unknown URLs under /api/ answer in the API's JSON error shape (portal/api/exceptions.py).
handler404 = "portal.api.exceptions.not_found"

api = DefaultRouter(trailing_slash=True)
api.registry.extend(registry_router.registry)
api.register("tokens", api_views.ApiTokenViewSet)
api.register("webhooks", api_views.WebhookViewSet)
api.register("approval-requests", approval_api.ApprovalRequestViewSet)
api.register("approval-policies", approval_api.ApprovalPolicyViewSet)
api.register("notifications", approval_api.NotificationViewSet, basename="notification")
for prefix, viewset in [*workers_api.ROUTES, *retraining_api.ROUTES]:
    api.register(prefix, viewset)

urlpatterns = [
    # The API first: Django tries patterns in order, and pipelines call it most (no page
    # pattern starts with "api/", so the order changes no answer, only the search).
    path("api/v1/access/grants/", api_views.GrantView.as_view(), name="api-grants"),
    path("api/v1/", include(workers_api_urls)),
    # OpenLineage's HTTP transport posts to api/v1/lineage (no trailing slash).
    path("api/v1/lineage", lineage_views.LineageView.as_view(), name="api-lineage"),
    path("api/v1/lineage/", include("lineage.api.urls")),
    path("api/v1/", include((api.urls, "api"), namespace="api")),
    path("", views.dashboard, name="dashboard"),
    # Operations (docs/operations.md); portal.health.ProbeMiddleware answers these first.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("favicon.ico", RedirectView.as_view(url="/static/favicon.svg", permanent=True)),
    path("static-vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("login/", security.LoginView.as_view(), name="login"),
    # Single sign-on (404 unless the OIDC_* settings are set; portal/security.py)
    path("oidc/authenticate/", security.oidc_authenticate, name="oidc-authenticate"),
    path("oidc/callback/", security.oidc_callback, name="oidc-callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("registry.urls")),
    path("access/", include("portal.access_urls")),
    path("audit/", include("audits.urls")),
    path("approvals/", include("approvals.urls")),
    path("reports/", include("lineage.reports.urls")),
    path("lineage/", include("lineage.urls")),
    path("", include("workers.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up code as a file (no inline script, so the
    # strict Content Security Policy holds); Redoc renders its spec in a blob: worker.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc/",
        csp_override(REDOC_CSP)(SpectacularRedocView.as_view(url_name="schema")),
        name="redoc",
    ),
]

# A lost database connection answers 503 + Retry-After instead of 500 (portal/errors.py).
handler500 = "portal.errors.server_error"
