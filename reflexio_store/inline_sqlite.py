"""SQLite single statements that AsyncStore runs on the event loop's own thread.

A pooled SQLite `load_state` is about 20 us of work; handing it to a worker thread and back
costs 85-125 us on a virtual machine (two thread wake-ups, measured with no database at all), so
no amount of work on the hop brings AsyncStore within 1.5x of Store. Where a statement cannot
wait, waiting on a thread buys nothing: workflow `save_state` and `load_state` (one statement
each, `Operation.connection`) run inline on an SQLite file, and only when all of this holds:

- the factory has checked its schema and holds its engine (the first call, which may migrate
  or build the engine, takes a worker);
- the pool has an idle connection ready as it is: the pool is never waited on, and no
  connection is opened or reopened here (an invalidated or recycled one goes to a worker);
- the file's place in the registry of open files can be marked without waiting for its lock
  or closing another file (registry.mark_sqlite_used);
- no one watches the engine (echo, tracing listeners), which keeps the Core path;
- the statement runs with busy_timeout 0. If another connection holds the write lock it fails
  at once with SQLITE_BUSY, having changed nothing (a statement in autocommit is its own
  transaction), and the call goes to a worker thread, which waits on busy_timeout as every
  other route does;
- an inline write runs with the WAL autocheckpoint off: the commit that crosses 1,000 WAL pages
  would copy them into the database file and sync it on the loop (1-4 ms measured). Instead,
  every CHECKPOINT_EVERY inline writes, the write that reached the count runs a passive
  checkpoint on a worker thread before it returns;
- the operation's last inline call on this database did not use more than SLOW_SECONDS of the
  loop thread's CPU time (a state of megabytes); after one that did, the next BACK_OFF_CALLS go
  to workers.

What is left on the loop is the statement's own work on one state, never a wait for another
connection or the pool. The connection goes back to the pool with its own busy_timeout and
autocheckpoint, or is invalidated if they might not have been restored (an interrupt). Errors
are those of the worker route (the same translation of a driver error); a validation error is
raised before any statement, as on every route.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.exc import DBAPIError

from reflexio_store.one_statement import DriverStatement
from reflexio_store.outages import is_busy, raise_translated
from reflexio_store.pool import BoundedQueuePool
from reflexio_store.sessions import SessionFactory, observed

if TYPE_CHECKING:
    from sqlalchemy.pool import PoolProxiedConnection

    from reflexio_store.store._operation import Operation

NOT_RUN: Final = object()
"""`run_inline`'s answer when the call must go to a worker thread."""

CHECKPOINT_EVERY = 100
"""Inline writes between passive checkpoints (a workflow state is a few pages: SQLite's own
autocheckpoint runs at 1,000)."""

AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default wal_autocheckpoint, which the engines leave as it is."""

SLOW_SECONDS = 0.002
"""An inline call that used more of the loop thread's CPU time than this (a state of megabytes:
encoding, pages), whatever its outcome, sends the next BACK_OFF_CALLS calls of that operation on
that database to worker threads."""

BACK_OFF_CALLS = 100

_BUSY_TIMEOUT_INFO = "reflexio_store.busy_timeout_ms"


def run_inline(
    factory: SessionFactory, op: Operation[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The operation's result, run on this thread, or NOT_RUN when it must take a worker (see
    the module docstring). A call answered NOT_RUN changed nothing."""
    if not op.connection or factory.backend != "sqlite" or not factory.schema_checked:
        return NOT_RUN
    engine = factory.leased_writer_engine()
    if engine is None or factory.storage.writer_url.is_memory:
        return NOT_RUN  # an in-memory database is one connection: nothing to gain, all to lose
    pool = engine.pool
    if not isinstance(pool, BoundedQueuePool) or observed(engine):
        return NOT_RUN
    left = pool.inline_backoff.get(op.name, 0)
    if left:
        pool.inline_backoff[op.name] = left - 1
        return NOT_RUN
    # The loop thread's own CPU time: waiting for the GIL, which any thread would, is not
    # counted against inline calls.
    started = time.thread_time()
    try:
        fairy = pool.idle_connection()
    except Exception:  # the worker's route decides (retries, translation)
        return NOT_RUN
    if fairy is None:
        return NOT_RUN
    writes = op.route == "write"
    changed = False
    try:
        if not factory.touch_without_waiting():
            return NOT_RUN
        changed = True
        try:
            _stop_waiting(fairy, writes)
        except Exception as exc:
            fairy.invalidate(exc)
            return NOT_RUN
        try:
            result = op.fn(
                DriverStatement(fairy, engine.dialect, factory.storage.schema), *args, **kwargs
            )
        except DBAPIError as exc:
            if is_busy(exc):
                return NOT_RUN
            raise_translated(exc, factory.storage.writer_url)
            raise
    finally:
        # Whatever happened, the connection goes back waiting as the pool's users expect.
        if changed:
            _wait_again(fairy, writes)
        fairy.close()
        if time.thread_time() - started > SLOW_SECONDS:
            pool.inline_backoff[op.name] = BACK_OFF_CALLS
    if writes:
        pool.inline_writes += 1
    return result


def checkpoint_due(factory: SessionFactory) -> bool:
    """True once every CHECKPOINT_EVERY inline writes on this factory's pool (never builds an
    engine: this runs on the loop)."""
    engine = factory.leased_writer_engine()
    pool = None if engine is None else engine.pool
    if not isinstance(pool, BoundedQueuePool) or pool.inline_writes < CHECKPOINT_EVERY:
        return False
    pool.inline_writes = 0
    return True


def checkpoint(factory: SessionFactory) -> None:
    """A passive WAL checkpoint (blocking: run it on a worker thread). It never waits for
    readers or writers: what they hold back is left to the next checkpoint."""
    fairy = factory.writer_engine.raw_connection()
    try:
        cursor = fairy.cursor()
        try:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            cursor.close()
    finally:
        fairy.close()


def _stop_waiting(fairy: PoolProxiedConnection, writes: bool) -> None:
    """busy_timeout 0 and, for a write, no autocheckpoint on the connection."""
    raw: Any = fairy.dbapi_connection
    if _BUSY_TIMEOUT_INFO not in fairy.info:
        fairy.info[_BUSY_TIMEOUT_INFO] = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout = 0")
    if writes:
        raw.execute("PRAGMA wal_autocheckpoint = 0")


def _wait_again(fairy: PoolProxiedConnection, writes: bool) -> None:
    """The connection's own settings again before it goes back to the pool. A connection whose
    settings may not have been restored, whatever the reason (a driver error, an interrupt), is
    invalidated: closed, never handed out again."""
    if not fairy.is_valid:
        return
    raw: Any = fairy.dbapi_connection
    try:
        busy_ms = fairy.info.get(_BUSY_TIMEOUT_INFO)
        if busy_ms is None:  # stopped before reading it, so before changing anything
            return
        raw.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        if writes:
            raw.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
    except BaseException as exc:
        fairy.invalidate(exc if isinstance(exc, Exception) else None)
        if not isinstance(exc, Exception):
            raise


__all__ = ["CHECKPOINT_EVERY", "NOT_RUN", "checkpoint", "checkpoint_due", "run_inline"]
