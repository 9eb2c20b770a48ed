"""The Celery application shared by every app's tasks."""

import logging.config
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("charter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect(weak=False)
def _configure_logging(**_: Any) -> None:
    """Workers log like the web processes (settings.LOGGING: JSON or text, with context)."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.before_task_publish.connect(weak=False)
def _stamp_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A task enqueued during a request carries that request's id (logged as its parent)."""
    from portal.logging import stamp_request_id

    stamp_request_id(headers)
