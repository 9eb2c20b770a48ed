from django.urls import path

from audits import views

urlpatterns = [
    path("", views.trail, name="audit-trail"),
    path("chain/", views.chain, name="audit-chain"),
    path("chain/verify/", views.verify_now, name="audit-verify"),
    path("chain/runs/<int:pk>/", views.run_status, name="audit-run"),
]
