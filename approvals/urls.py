from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<int:pk>/", views.review, name="review"),
    path("<int:pk>/decide/", views.decide, name="decide"),
    path("<int:pk>/withdraw/", views.withdraw, name="withdraw"),
    path("<int:pk>/resubmit/", views.resubmit, name="resubmit"),
    path("<int:pk>/attestation.json", views.attestation, name="attestation"),
    path("request/<int:version_pk>/", views.request_create, name="request"),
    path("policies/", views.policy_list, name="policies"),
    path("policies/<int:pk>/", views.policy_detail, name="policy"),
    path("reviews/<int:pk>/sign-off/", views.review_sign_off, name="review-sign-off"),
    path("notifications/", views.notifications, name="notifications"),
]
