from django.urls import path

from portal import access_views

urlpatterns = [
    path("tokens/", access_views.tokens, name="access-tokens"),
    path("tokens/<int:pk>/revoke/", access_views.token_revoke, name="access-token-revoke"),
    path("use-cases/", access_views.grants_index, name="access-grants-index"),
    path("use-cases/<int:pk>/", access_views.grants, name="access-grants"),
    path("webhooks/", access_views.webhooks_index, name="access-webhooks"),
    path("webhooks/<int:pk>/", access_views.webhook_detail, name="access-webhook"),
    path("webhooks/<int:pk>/update/", access_views.webhook_update, name="access-webhook-update"),
    path("webhooks/<int:pk>/test/", access_views.webhook_test, name="access-webhook-test"),
    path("webhooks/<int:pk>/delete/", access_views.webhook_delete, name="access-webhook-delete"),
]
