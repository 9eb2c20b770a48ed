from django.urls import path

from portal import access_views

urlpatterns = [
    path("tokens/", access_views.tokens, name="access-tokens"),
    path("tokens/<int:pk>/revoke/", access_views.token_revoke, name="access-token-revoke"),
    path("use-cases/", access_views.grants_index, name="access-grants-index"),
    path("use-cases/<int:pk>/", access_views.grants, name="access-grants"),
]
