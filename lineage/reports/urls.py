from django.urls import path

from lineage.reports import views

urlpatterns = [
    path("jobs/<int:pk>/", views.job, name="report-job"),
    path("jobs/<int:pk>/download/", views.download, name="report-download"),
    path("<str:kind>/<int:pk>/", views.report, name="report"),
    path("<str:kind>/<int:pk>/build/", views.build, name="report-build"),
]
