"""Settling a long-lived server process once its code is loaded.

A WSGI worker or a Celery worker process imports Django, every app, the URL
configuration and the views once, then serves requests (or tasks) for hours. Python's
cyclic garbage collector does not know that: every 700 net allocations it scans the
youngest objects, and every so often the whole heap, start-up objects included, though
none of them will ever be garbage. On the load test's mix that was about a seventh of a
worker's CPU.

:func:`settle` imports what the first request would otherwise import, collects once,
then freezes everything alive (``gc.freeze``: moved to a permanent generation the
collector skips) and raises the youngest generation's threshold
(``CHARTER_GC_GEN0_THRESHOLD``). Reference counting still frees almost everything a
request allocates at once; cycles are still collected, less often. A fork after
``settle`` (gunicorn ``--preload``) also keeps the frozen pages shared, since the
collector no longer writes to them.
"""

from __future__ import annotations

import gc

from django.conf import settings


def settle(*, import_urls: bool = True) -> None:
    threshold = settings.CHARTER_GC_GEN0_THRESHOLD
    if import_urls:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018  (imports every view module now)
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
