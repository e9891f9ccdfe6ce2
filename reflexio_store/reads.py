"""A read operation that survives its replica: `run_read` (Store and AsyncStore both run their
operations through it, AsyncStore on a worker thread).

The reader session already avoids a replica it cannot connect to (sessions.py). When the
replica's connection breaks while the read runs (the server stopped, crashed or cancelled the
query for a recovery conflict), the whole read operation runs again on the primary, read-only,
and the replica is marked down (replicas.py). A replica that has not yet replayed a migration
(the schema, a table or a column is missing there but the primary has it) is behind, not down:
the read runs again on the primary and a warning is logged once per replica and missing object.
Only reads are re-run, and never by re-entering a context manager's yield: the operation is
called again with a new session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError

from reflexio_store.db_errors import server_reason
from reflexio_store.outages import is_outage, raise_translated
from reflexio_store.replicas import Choice
from reflexio_store.sessions import REPLICA_INFO

if TYPE_CHECKING:
    from reflexio_store.sessions import Consistency, SessionFactory

T = TypeVar("T")

log = logging.getLogger(__name__)

_NOT_REPLAYED = {
    "3F000": "schema",  # invalid_schema_name
    "42P01": "table",  # undefined_table
    "42703": "column",  # undefined_column
}
"""SQLSTATEs a replica answers while a migration the primary has is still on its way."""
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _is_recovery_conflict(exc: DBAPIError) -> bool:
    """A standby cancelled the query because replay needed its rows (SQLSTATE 40001)."""
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "40001" and "recovery" in str(orig).lower()


def _migration_not_replayed(choice: Choice, exc: DBAPIError) -> bool:
    """The replica lacks a schema object the read needs: most likely a migration not yet
    replayed there. If the primary lacks it too, the read fails there with the same error."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    missing = _NOT_REPLAYED.get(sqlstate or "")
    if missing is None:
        return False
    where = choice.replica.url.masked()
    reason = server_reason(exc, choice.replica.url)
    # Once per replica and missing object (the reason names it): a later migration's lag is
    # reported again, the reads of one lag are not reported one by one.
    with _warned_lock:
        first = (where, reason) not in _warned
        _warned.add((where, reason))
    if first:
        log.warning(
            "The replica %s has no such %s yet (%s); reads that need it run on the primary until "
            "the replica replays the migration. Logged once per replica and missing object.",
            where,
            missing,
            reason,
        )
    return True


def _replica_gave_up(choice: Any, exc: DBAPIError) -> bool:
    """True when the read should run again on the primary; marks the replica down if broken."""
    if not isinstance(choice, Choice):
        return False
    if is_outage(exc):
        choice.replica.health.failed(server_reason(exc, choice.replica.url), probe=False)
        return True
    return _is_recovery_conflict(exc) or _migration_not_replayed(choice, exc)


def run_read(
    factory: SessionFactory,
    consistency: Consistency,
    fn: Callable[..., T],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> T:
    """`fn(session, *args, **kwargs)` on a reader session; again on the primary if the replica
    broke before it returned. Outages of the primary raise DatabaseUnavailableError."""
    kwargs = kwargs or {}
    choice: Any = None
    try:
        with factory.read_session(consistency, autocommit=True) as session:
            choice = session.info.get(REPLICA_INFO)
            return fn(session, *args, **kwargs)
    except DBAPIError as exc:
        if not _replica_gave_up(choice, exc):
            raise_translated(
                exc, factory.session_url(None) if choice is None else choice.replica.url
            )
            raise
    try:
        with factory.read_session("strong", autocommit=True) as session:
            return fn(session, *args, **kwargs)
    except DBAPIError as exc:
        raise_translated(exc, factory.storage.writer_url)
        raise
