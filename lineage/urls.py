from django.urls import path

from lineage import views

urlpatterns = [
    path("", views.lineage_view, name="lineage"),
    path("impact/", views.impact_view, name="lineage-impact-page"),
]
