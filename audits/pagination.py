"""Paging the audit trail at a cost that does not grow with the chain.

Django's ``Paginator`` counts with ``SELECT COUNT(*)`` and reaches page *p* with ``OFFSET``:
both walk the table, and the audit table only grows (every audited write adds a row; a
busy portal adds millions a month). Two facts about the chain make that walk unnecessary:

* ``seq`` is gapless: each append takes the head's ``seq + 1`` under the writers' lock,
  in the writer's transaction, and rows leave only as a prefix that a signed segment
  archived (``audits.archive``, which refuses a gap). So the events held are exactly
  ``min(seq) … max(seq)``: the unfiltered trail is counted with two index lookups, and
  its page *p* is a ``seq`` range, read from the index like the first page.
* A filtered trail has no such shape. It is counted up to :data:`COUNT_CAP` events
  (``COUNT(*)`` over a ``LIMIT``-ed subquery); past that the pager says "more than …"
  and points to the "Until" filter, which reaches older events (or export the lot).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Max, Min, QuerySet

COUNT_CAP = 10_000  # events counted exactly in a filtered trail


class TrailPaginator(Paginator):
    """``Paginator`` over audit events ordered by ``-seq``.

    ``whole_chain``: ``object_list`` is every event held (no filter), so counting and paging
    use ``seq`` bounds. Otherwise the count stops at ``cap`` and :attr:`capped` says so.
    """

    def __init__(
        self,
        object_list: QuerySet,
        per_page: int,
        *,
        whole_chain: bool,
        cap: int | None = None,
    ) -> None:
        super().__init__(object_list, per_page)  # no orphans: a page is a fixed seq range
        self.whole_chain = whole_chain
        self.cap = COUNT_CAP if cap is None else cap
        self.capped = False

    @cached_property
    def _bounds(self) -> tuple[int, int] | None:
        """(lowest, highest) seq held, or None for an empty table: two index lookups."""
        found = self.object_list.model.objects.aggregate(lo=Min("seq"), hi=Max("seq"))
        return None if found["hi"] is None else (found["lo"], found["hi"])

    @cached_property
    def count(self) -> int:
        if self.whole_chain:
            return 0 if self._bounds is None else self._bounds[1] - self._bounds[0] + 1
        n = self.object_list[: self.cap + 1].count()
        self.capped = n > self.cap
        return min(n, self.cap)

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        if not self.whole_chain:
            if not self.capped:
                return super().page(number)
            bottom = (number - 1) * self.per_page  # a full page, not cut at the cap
            return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)
        if self._bounds is None:
            return self._get_page([], number, self)
        lo, hi = self._bounds
        top = hi - (number - 1) * self.per_page
        rows = self.object_list.filter(seq__lte=top, seq__gt=max(lo - 1, top - self.per_page))
        return self._get_page(rows, number, self)
