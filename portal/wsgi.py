import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()


def _import_broker_transport() -> None:
    """Import the broker's transport (kombu's Redis one pulls in redis-py: ~0.5 s of CPU)
    now, at start-up, instead of in the first request that queues a task, where two threads
    of a worker would both wait on the import lock while their clients wait on them."""
    from portal.celery import app as celery_app

    celery_app.connection_for_write().transport_cls  # noqa: B018 (the import is the point)


_import_broker_transport()
