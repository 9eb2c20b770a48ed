from typing import Any

from django.http import HttpRequest

#: Set on a session user loaded by ``portal.auth.SessionBackend``: their unread
#: notifications, counted in the statement that loaded them.
UNREAD_ATTR = "_charter_unread_notifications"


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": []}
    from approvals.models import Notification
    from portal.keys import configured_problem
    from portal.permissions import role_names

    unread = getattr(user, UNREAD_ATTR, None)
    if unread is None:
        unread = Notification.objects.filter(user=user, read_at__isnull=True).count()
    return {
        "signing_key_problem": configured_problem(),
        "user_roles": sorted(role_names(user)),
        "unread_notifications": unread,
    }
