"""Django's PostgreSQL backend, with savepoints (and chosen writes) sent along with the
next statement.

Every nested ``transaction.atomic`` block (a service called inside the request's
transaction, for one) costs Django two extra round trips to the database: ``SAVEPOINT``
on entry and ``RELEASE SAVEPOINT`` on exit, each waiting for its answer. Here both are
queued on the connection instead and sent in the same round trip as the next statement
(``SAVEPOINT s1; INSERT …``), which psycopg's client-side binding cursor allows. The
order the server sees is unchanged, so are the savepoints' semantics:

* a savepoint released or rolled back before any statement ran inside it is simply
  dropped from the queue (nothing to undo);
* ``ROLLBACK TO SAVEPOINT`` for a savepoint already sent is sent at once (after dropping
  what was queued since, all of it nested inside);
* ``COMMIT`` and ``ROLLBACK`` drop the queue (they end every savepoint);
* anything that does not pass through :class:`Cursor.execute` (a named server-side
  cursor, ``executemany``, ``COPY``) sends the queue first, on its own.

The transaction's ``BEGIN`` is queued the same way (see ``_set_autocommit``), and so are
writes whose answer nobody waits for (``DatabaseWrapper.defer_write``: a new registry
object's lineage node, many-to-many rows and edges), which then cost no round trip either.

**Prepared statements.** A ``SELECT``, ``INSERT``, ``UPDATE`` or ``DELETE`` with parameters
is bound on the server instead (``$1`` placeholders, the values sent apart), so that psycopg
prepares the statements a connection runs repeatedly (``prepare_threshold``): PostgreSQL then
parses and plans each of them once per connection instead of once per execution — for the
portal's small indexed reads, parsing and planning are most of the server's work. One that
carries queued statements goes with them in one round trip through psycopg's pipeline mode;
statements without parameters, and utility statements (``SET``…), keep client-side binding.
Behind a pooler that hands sessions out per transaction, ``DATABASE_PREPARED_STATEMENTS=false``
turns preparing (and server-side binding with it) off.

Selected with ``ENGINE = "portal.db.postgresql"`` (``portal/settings.py`` does so for a
``postgres://`` ``DATABASE_URL``).
"""

from __future__ import annotations

import select
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base, operations
from django.db.backends.utils import debug_transaction
from psycopg import errors, pq


@dataclass
class _Queued:
    text: str
    #: called with the statement's row count once it ran (deferred writes only)
    on_result: Callable[[int], None] | None = None
    #: BEGIN, SAVEPOINT or RELEASE (not a write of data)
    control: bool = True


#: Statements waiting to go with the next one, per psycopg connection.
_QUEUES: weakref.WeakKeyDictionary[Any, list[_Queued]] = weakref.WeakKeyDictionary()


def _queue(raw: Any) -> list[_Queued]:
    queue = _QUEUES.get(raw)
    if queue is None:
        queue = _QUEUES[raw] = []
    return queue


def _run(
    cursor: Any, carried: list[_Queued], query: Any, params: Any, kwargs: Any
) -> list[tuple[Callable[[int], None], int]]:
    """Send ``carried`` and ``query`` in one round trip and leave the cursor at
    ``query``'s result; the carried statements' ``on_result`` calls to make."""
    if params is not None:
        # bound on its own (psycopg caches the parse of a short statement's text), and the
        # whole message then sent without parameters: nothing in it is parsed again
        query = cursor.mogrify(query, params)
    base.Cursor.execute(cursor, "; ".join([*(q.text for q in carried), query]), **kwargs)
    calls = []
    for item in carried:
        if item.on_result is not None:
            calls.append((item.on_result, cursor.rowcount))
        cursor.nextset()  # to the caller's statement: its rows, rowcount and status
    return calls


def _call(calls: list[tuple[Callable[[int], None], int]]) -> None:
    for callback, count in calls:
        callback(count)  # may query again: through other cursors, the carrier's rows stay


def _flush(raw: Any) -> None:
    """Send what is queued now, on its own (for the paths that cannot carry it)."""
    queue = _QUEUES.get(raw)
    if queue:
        carried = list(queue)
        queue.clear()
        last = carried.pop()
        with base.Cursor(raw) as cursor:
            calls = _run(cursor, carried, last.text, None, {})
            if last.on_result is not None:
                calls.append((last.on_result, cursor.rowcount))
        _call(calls)


_NOTHING_SENT = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.IDLE)


#: statements that take parameters on the server; others (SET, EXECUTE, DDL…) keep their
#: values inlined as literals
_BINDABLE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"})


def _bindable(query: Any) -> bool:
    if not isinstance(query, str):
        return False
    words = query.lstrip()[:7].split(None, 1)
    return bool(words) and (words[0].startswith("(") or words[0].upper() in _BINDABLE)


class Cursor(base.Cursor):
    """Django's client-side binding cursor; ``execute`` carries the queued statements, and
    binds a statement with parameters that carries nothing on the server, where psycopg
    prepares it once the connection has run it ``prepare_threshold`` times."""

    _bind_on_server = False
    #: whether the last statement was bound on the server, and what travelled before it
    #: (for ``last_executed_query``)
    bound_on_server = False
    carried_text = ""

    # psycopg's client-side cursor, or its server-side binding one for this statement
    @property
    def _query_cls(self) -> Any:  # type: ignore[override]
        return psycopg.Cursor._query_cls if self._bind_on_server else base.Cursor._query_cls

    def _execute_send(self, query: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self._bind_on_server:
            return psycopg.Cursor._execute_send(self, query, **kwargs)  # type: ignore[arg-type]
        return super()._execute_send(query, **kwargs)

    def _get_prepared(self, pgq: Any, prepare: bool | None = None) -> Any:  # type: ignore[override]
        if self._bind_on_server:
            return psycopg.Cursor._get_prepared(self, pgq, prepare)  # type: ignore[arg-type]
        return super()._get_prepared(pgq, prepare)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        queue = _QUEUES.get(self.connection)
        self.carried_text = ""
        self.bound_on_server = bool(
            params and self.connection.prepare_threshold is not None and _bindable(query)
        )
        if not queue:
            if self.bound_on_server:
                return self._execute_bound(query, params, kwargs)
            return super().execute(query, params, **kwargs)
        carried = list(queue)
        queue.clear()
        if self.bound_on_server:
            return self._execute_pipelined(carried, query, params, kwargs)
        if not isinstance(query, str):
            query = query.decode() if isinstance(query, bytes) else query.as_string(self)
        try:
            calls = _run(self, carried, query, params, kwargs)
        except BaseException:
            # Nothing reached the server (the query could not be composed): what was
            # queued is still to be sent — BEGIN included, which leaves the session idle.
            # An error from the server leaves it in a failed transaction (the caller rolls
            # back), a lost connection in an unknown state: nothing to keep then.
            if self.connection.info.transaction_status in _NOTHING_SENT:
                queue[:0] = carried
            raise
        _call(calls)
        return self

    def _execute_bound(self, query: str, params: Any, kwargs: Any) -> Any:
        self._bind_on_server = True
        try:
            return super().execute(query, params, **kwargs)
        finally:
            self._bind_on_server = False

    def _execute_pipelined(
        self, carried: list[_Queued], query: str, params: Any, kwargs: Any
    ) -> Any:
        """The queued statements, then this one bound on the server (prepared once it is
        known), in one round trip: psycopg's pipeline mode. Whatever happens, what was
        queued has gone (the pipeline is synced even when composing the statement fails),
        so nothing is put back; the deferred writes' callbacks run only on success."""
        raw = self.connection
        self.carried_text = "; ".join(q.text for q in carried)
        carriers: list[tuple[_Queued, Any]] = []
        try:
            with raw.pipeline():
                for item in carried:
                    carrier = psycopg.ClientCursor(raw)
                    carrier.execute(item.text)
                    carriers.append((item, carrier))
                self._execute_bound(query, params, kwargs)
            calls = [
                (item.on_result, carrier.rowcount)
                for item, carrier in carriers
                if item.on_result is not None
            ]
        finally:
            for _, carrier in carriers:
                carrier.close()
        _call(calls)
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        _flush(self.connection)
        return super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        _flush(self.connection)
        return super().copy(statement, params, **kwargs)

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        _flush(self.connection)
        return super().stream(query, params, **kwargs)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str | None:
        """The statement with its values in place, as Django shows it (debug, tests), for
        one bound on the server too (psycopg then holds it with ``$1`` placeholders)."""
        if params and getattr(cursor, "bound_on_server", False):
            try:
                composed = self.compose_sql(sql, params)
            except errors.DataError:
                composed = sql
            carried = getattr(cursor, "carried_text", "")
            return f"{carried}; {composed}" if carried else composed
        return super().last_executed_query(cursor, sql, params)


#: psycopg keeps this many prepared statements per connection (its default, 100, is less
#: than the distinct statements the portal's pages and endpoints run)
PREPARED_MAX = 500
#: a statement is prepared on its second run on a connection (psycopg's default is 5)
PREPARE_THRESHOLD = 1


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dropped: set[str] = set()  # savepoints rolled back while still queued

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if params.get("cursor_factory") is base.Cursor:
            params["cursor_factory"] = Cursor
        # Django leaves psycopg's preparing off unless OPTIONS asks (for poolers)
        params["prepare_threshold"] = (
            self.settings_dict["OPTIONS"].get("prepare_threshold", PREPARE_THRESHOLD)
            if settings.CHARTER_DB_PREPARED_STATEMENTS
            else None
        )
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        raw = super().get_new_connection(conn_params)
        if raw.prepare_threshold is not None:
            raw.prepared_max = PREPARED_MAX
        return raw

    def create_cursor(self, name: str | None = None) -> Any:
        if name and self._deferring():
            _flush(self.connection)  # a named cursor's DECLARE goes on its own
            # as Django's, held past the transaction only outside one (the psycopg
            # connection itself always reads autocommit here, see _set_autocommit)
            cursor = base.ServerSideCursor(
                self.connection, name=name, scrollable=False, withhold=self.get_autocommit()
            )
            return base.CursorDebugWrapper(cursor, self)
        return super().create_cursor(name)

    def _set_autocommit(self, autocommit: bool) -> None:
        """Django turns autocommit off to start a transaction; psycopg would then send
        ``BEGIN`` on its own before the next statement, a round trip of its own. Here the
        psycopg connection stays in autocommit and ``BEGIN`` is queued to go with that
        statement; ``COMMIT``/``ROLLBACK`` are sent by psycopg as before (it does so
        whenever a transaction is open), or not at all if nothing ran."""
        if not self._deferring():
            return super()._set_autocommit(autocommit)
        with self.wrap_database_errors:
            if not self.connection.autocommit:
                self.connection.autocommit = True
        if not autocommit:
            _queue(self.connection).append(_Queued("BEGIN"))

    def defer_write(
        self, sql: str, params: Any = (), on_result: Callable[[int], None] | None = None
    ) -> bool:
        """Queue a write whose answer nobody waits for, to travel with the next statement
        (``portal.db.defer``). False, and nothing queued, outside a transaction or with a
        server-side binding cursor. ``on_result`` gets the statement's row count once it
        has run, before the statement that carried it returns. Everything that talks to
        the database through this connection sends the queue first, so a read never
        misses a deferred write; a rollback discards it; ``COMMIT`` sends it first."""
        if not self.in_atomic_block or not self._deferring():
            return False
        with base.Cursor(self.connection) as cursor:
            text = cursor.mogrify(sql, params) if params else sql
        _queue(self.connection).append(_Queued(text, on_result, control=False))
        return True

    def is_usable(self) -> bool:
        """Django's health check (``CONN_HEALTH_CHECKS``, before a request reuses the
        connection) sends ``SELECT 1`` and waits for it: a round trip per request. An idle
        connection the server has dropped (a restart, a terminated backend, a failover) has
        its goodbye or its end of file waiting on the socket, so here the socket is polled
        first, without waiting: nothing there, and the connection is idle, means usable;
        anything there (a notice, the server's farewell) and the check is Django's own."""
        raw = self.connection
        if raw is None or raw.closed:
            return False
        if raw.info.transaction_status != pq.TransactionStatus.IDLE or _QUEUES.get(raw):
            return super().is_usable()
        poller = select.poll()
        try:
            poller.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            ready = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not ready or super().is_usable()

    def _deferring(self) -> bool:
        return self.connection is not None and self.connection.cursor_factory is Cursor

    def _savepoint(self, sid: str) -> None:
        if not self._deferring():
            return super()._savepoint(sid)
        _queue(self.connection).append(_Queued(self.ops.savepoint_create_sql(sid)))

    def _savepoint_commit(self, sid: str) -> None:
        if not self._deferring():
            return super()._savepoint_commit(sid)
        if sid in self._dropped:  # rolled back before it was ever sent (Django then
            self._dropped.discard(sid)  # releases it: there is nothing to release)
            return
        queue = _queue(self.connection)
        at = _position(queue, self.ops.savepoint_create_sql(sid))
        if at is not None and all(q.control for q in queue[at:]):
            del queue[at:]  # nothing ran inside it (nor inside what it holds)
        else:
            queue.append(_Queued(self.ops.savepoint_commit_sql(sid)))

    def _savepoint_rollback(self, sid: str) -> None:
        if not self._deferring():
            return super()._savepoint_rollback(sid)
        queue = _queue(self.connection)
        at = _position(queue, self.ops.savepoint_create_sql(sid))
        if at is not None:  # never sent: what was queued since is undone with it
            del queue[at:]
            self._dropped.add(sid)
            return
        queue.clear()  # queued after the savepoint was sent: all of it nested inside
        super()._savepoint_rollback(sid)

    def _commit(self) -> Any:
        """``COMMIT``, carrying what is queued: the deferred writes and ``COMMIT`` in one
        round trip. A write that fails there aborts the transaction before ``COMMIT`` is
        reached (the server skips the rest of the message), and the error is raised here,
        so Django rolls back as for any failed commit. Writes with an ``on_result`` go
        first, on their own: their callbacks may still write inside the transaction."""
        self._dropped.clear()
        if self.connection is not None:
            queue = _QUEUES.pop(self.connection, None)
            if queue and all(q.control for q in queue):
                if queue[0].text == "BEGIN":
                    return None  # the transaction never reached the server: nothing to end
            elif queue:
                if any(q.on_result is not None for q in queue):
                    _QUEUES[self.connection] = queue
                    with self.wrap_database_errors:
                        _flush(self.connection)
                else:
                    sql = "; ".join([*(q.text for q in queue), "COMMIT"])
                    with (
                        debug_transaction(self, sql),
                        self.wrap_database_errors,
                        base.Cursor(self.connection) as cursor,
                    ):
                        _run(cursor, queue, "COMMIT", None, {})
                    return None
        return super()._commit()

    def _rollback(self) -> Any:
        self._dropped.clear()
        if self.connection is not None:
            queue = _QUEUES.pop(self.connection, None)
            if queue and queue[0].text == "BEGIN":
                return None  # the transaction never reached the server: nothing to end
        return super()._rollback()

    def _close(self) -> Any:
        self._dropped.clear()
        if self.connection is not None:
            _QUEUES.pop(self.connection, None)
        return super()._close()


def _position(queue: list[_Queued], text: str) -> int | None:
    for i, item in enumerate(queue):
        if item.text == text:
            return i
    return None
