from django.urls import path

from workers import api, retraining_views, views

# Under /api/v1/ (portal/urls.py); the list endpoints are registered on the API router.
api_urlpatterns = [
    path(
        "dataset-versions/<int:pk>/reference-profile/",
        api.ReferenceProfileView.as_view(),
        name="api-reference-profile",
    ),
    path("deployments/<int:pk>/telemetry/", api.TelemetryView.as_view(), name="api-telemetry"),
    path("deployments/<int:pk>/profiles/", api.ProfilesView.as_view(), name="api-profiles"),
    path("deployments/<int:pk>/labels/", api.LabelsView.as_view(), name="api-labels"),
    path(
        "deployments/<int:pk>/monitoring-config/",
        api.MonitoringConfigView.as_view(),
        name="api-monitoring-config",
    ),
    path("deployments/<int:pk>/evaluate/", api.EvaluateView.as_view(), name="api-evaluate"),
]

urlpatterns = [
    path("deployments/<int:pk>/monitoring/", views.monitoring, name="deployment-monitoring"),
    path(
        "deployments/<int:pk>/monitoring/feature/",
        views.feature_histogram,
        name="deployment-monitoring-feature",
    ),
    path(
        "deployments/<int:pk>/monitoring/evaluate/",
        views.evaluate_now,
        name="deployment-monitoring-evaluate",
    ),
    path("incidents/", views.incident_list, name="incident-list"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/act/", views.incident_act, name="incident-act"),
    path("retraining/", retraining_views.job_list, name="retraining-jobs"),
    path("retraining/<int:pk>/", retraining_views.job_detail, name="retraining-job"),
    path(
        "retraining/<int:pk>/status/",
        retraining_views.job_status,
        name="retraining-job-status",
    ),
    path("retraining/<int:pk>/act/", retraining_views.job_act, name="retraining-job-act"),
]
