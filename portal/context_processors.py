from typing import Any

from django.http import HttpRequest


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": []}
    from approvals.models import Notification
    from portal.keys import configured_problem

    return {
        "signing_key_problem": configured_problem(),
        "user_roles": sorted(g.name for g in user.groups.all()),
        "unread_notifications": Notification.objects.filter(
            user=user, read_at__isnull=True
        ).count(),
    }
