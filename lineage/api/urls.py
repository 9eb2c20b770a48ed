"""Mounted under ``api/v1/lineage/`` (``api/v1/lineage`` itself is in portal.urls)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from lineage.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("nodes", views.LineageNodeViewSet, basename="lineage-node")
router.register("events", views.LineageEventViewSet, basename="lineage-event")

urlpatterns = [
    path("batch", views.LineageBatchView.as_view(), name="lineage-batch"),
    path("upstream", views.UpstreamView.as_view(), name="lineage-upstream"),
    path("downstream", views.DownstreamView.as_view(), name="lineage-downstream"),
    path("impact", views.ImpactView.as_view(), name="lineage-impact"),
    path("path", views.PathView.as_view(), name="lineage-path"),
    path("production", views.ProductionView.as_view(), name="lineage-production"),
    *router.urls,
]
