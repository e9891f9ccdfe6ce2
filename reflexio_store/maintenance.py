"""PostgreSQL maintenance: rewrite the user-keyed tables in user order (CLUSTER).

A user-filtered search scans that user's rows (an exact vector scan up to VECTOR_EXACT_ROWS rows,
and the user's text matches). Rows are written in arrival order, interleaved with every other
user's, so a user's 2,000 profiles sit on about 2,000 heap pages, one page read per row.
CLUSTER rewrites the table ordered by its (user_id, ...) index: the same rows then fill a few
hundred pages. Measured at 100k profiles (README, "Operations"): user-filtered hybrid search
p50 6-7 ms -> 4.2-4.6 ms. Rows written afterwards arrive unordered again, so this is periodic
maintenance, like VACUUM FULL.

CLUSTER holds an ACCESS EXCLUSIVE lock on the table while it rewrites it and rebuilds every index
(HNSW included): reads and writes of that table wait, on the replicas too (the lock is replayed
there). Each table is clustered in its own transaction, after taking its lock with a
lock_timeout, so a long-running transaction makes the command fail at once (nothing changed)
instead of queueing every other query behind it.

For a periodic job, `only_below` rewrites only the tables that have lost their user order: each
table is ANALYZEd (a sample; reads and writes go on) and clustered only when the correlation of
its user_id column with the physical row order (pg_stats.correlation: 1.0 right after CLUSTER,
near 0 for rows written in arrival order) is below the bound.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from reflexio_store.db_errors import is_unavailable, unavailable_error
from reflexio_store.errors import ConfigurationError, DatabaseBusyError, ValidationError
from reflexio_store.settings import DEFAULT_SCHEMA, ResolvedStorage
from reflexio_store.validation import require_number, shown_value

USER_ORDER_INDEXES: dict[str, str] = {
    "profiles": "ix_profiles_user_id_status_created_at",
    "user_playbooks": "ix_user_playbooks_user_id_status_created_at",
    "interactions": "ix_interactions_user_id_created_at",
    "requests": "ix_requests_user_id_created_at",
}
"""The tables searched or listed per user, and the (user_id, ...) index each is ordered by."""

MIN_LOCK_TIMEOUT_SECONDS = 0.001
MAX_LOCK_TIMEOUT_SECONDS = 3600.0
_LOCK_NOT_AVAILABLE = "55P03"


# The one place the limits of cluster_by_user's options live. `name` is how the caller's user
# spelled the option: the parameter name from Python, the option (--lock-timeout) from the CLI,
# which checks them before it connects or asks anything.
def check_lock_timeout(value: object, name: str = "lock_timeout") -> float:
    """Seconds to wait for each table's lock: MIN_LOCK_TIMEOUT_SECONDS to
    MAX_LOCK_TIMEOUT_SECONDS."""
    return require_number(value, name, MIN_LOCK_TIMEOUT_SECONDS, MAX_LOCK_TIMEOUT_SECONDS)


def check_only_below(value: object, name: str = "only_below") -> float | None:
    """None (cluster every table), or the user order (0 to 1) below which a table is clustered."""
    return None if value is None else require_number(value, name, 0.0, 1.0)


@dataclass(frozen=True)
class ClusteredTable:
    table: str
    rows: int
    pages: int
    seconds: float
    user_order: float | None = None
    """The user_id correlation found before (only measured with `only_below`; None: not
    measured, or no statistics, e.g. an empty table)."""
    clustered: bool = True
    """False: left as it was, its user order was at least `only_below` (or unknown)."""


def _tables(tables: Sequence[str] | None) -> list[str]:
    if tables is None:
        return list(USER_ORDER_INDEXES)
    if isinstance(tables, str):
        tables = [tables]
    chosen: list[str] = []
    for name in tables:
        if not isinstance(name, str) or name not in USER_ORDER_INDEXES:
            raise ValidationError(
                f"Unknown table {shown_value(name)} to cluster; choose from: "
                f"{', '.join(USER_ORDER_INDEXES)}."
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValidationError("No table given to cluster; pass None for all of them.")
    return chosen


def _user_order(
    engine: Engine, storage: ResolvedStorage, schema: str, table: str
) -> tuple[float | None, int, int]:
    """(user_id correlation, rows, pages) of `table` after a fresh ANALYZE."""
    qualified = f'"{schema}"."{table}"'
    try:
        with engine.begin() as conn:
            rows, pages = _analyze(conn, qualified)
            order = conn.execute(
                text(
                    "SELECT correlation FROM pg_stats WHERE schemaname = :schema "
                    "AND tablename = :table AND attname = 'user_id'"
                ),
                {"schema": schema, "table": table},
            ).scalar()
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise unavailable_error(exc, storage.writer_url, "analyze tables in") from None
        raise
    # The order of the rows, ascending or descending: a descending one is as local.
    return (None if order is None else abs(float(order))), rows, pages


def _analyze(conn: Connection, qualified: str) -> tuple[int, int]:
    """ANALYZE the table, then its (rows, heap pages) as the statistics now say."""
    conn.execute(text(f"ANALYZE {qualified}"))
    rows, pages = conn.execute(
        text(
            "SELECT reltuples::bigint, relpages FROM pg_class WHERE oid = CAST(:name AS regclass)"
        ),
        {"name": qualified},
    ).one()
    return max(int(rows), 0), int(pages)


ADVISE_BELOW_ORDER = 0.5
"""`reflexio-store check` advises clustering a table whose user order is below this ..."""
ADVISE_FROM_ROWS = 2_000
"""... and whose largest user holds at least this many rows (estimated from the statistics):
at 100k profiles, users of 2,000 rows searched 1.6x faster after clustering, and the exact scan
of 18,000 rows at 1M 2.7x (README)."""


@dataclass(frozen=True)
class UserOrder:
    """What the planner's statistics (the last ANALYZE, autovacuum's included) say about one
    table's user order: read without touching the table."""

    table: str
    order: float | None
    """|correlation| of user_id with the physical row order (1.0 right after CLUSTER), None
    without statistics."""
    largest_user: int
    """Estimated rows of the user with the most (0 without statistics)."""

    @property
    def worth_clustering(self) -> bool:
        return (
            self.order is not None
            and self.order < ADVISE_BELOW_ORDER
            and self.largest_user >= ADVISE_FROM_ROWS
        )


def user_order(conn: Connection, schema: str) -> list[UserOrder]:
    """The user order of each table of USER_ORDER_INDEXES in `schema`, from pg_stats and
    pg_class only (no ANALYZE, no scan), in one statement."""
    rows = conn.execute(
        text(
            "SELECT c.relname, s.correlation, c.reltuples, s.n_distinct, s.most_common_freqs "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
            "AND s.attname = 'user_id' "
            "WHERE n.nspname = :schema AND c.relname = ANY(:tables) AND c.relkind = 'r'"
        ),
        {"schema": schema, "tables": list(USER_ORDER_INDEXES)},
    ).all()
    found = {row[0]: row for row in rows}
    return [_user_order_of(name, found.get(name)) for name in USER_ORDER_INDEXES if name in found]


def _user_order_of(table: str, row: Any) -> UserOrder:
    _name, correlation, reltuples, n_distinct, freqs = row
    total = max(float(reltuples or 0), 0.0)
    if correlation is None or total == 0:
        return UserOrder(table, None, 0)
    # The most common user's share, or else the average user's (n_distinct < 0: a fraction of
    # the rows; > 0: a count).
    shares = [float(f) for f in freqs or ()]
    average = 0.0
    if n_distinct:
        distinct = -float(n_distinct) * total if n_distinct < 0 else float(n_distinct)
        average = total / max(distinct, 1.0)
    largest = max(max(shares, default=0.0) * total, average)
    return UserOrder(table, abs(float(correlation)), round(largest))


def cluster_by_user(
    storage: ResolvedStorage,
    tables: Sequence[str] | None = None,
    *,
    lock_timeout: float = 10.0,
    only_below: float | None = None,
) -> list[ClusteredTable]:
    """CLUSTER each of `tables` (default: all of USER_ORDER_INDEXES) of `storage`'s schema by
    its user index, then ANALYZE it. Raises DatabaseBusyError, having changed nothing more, when
    a table's lock is not granted within `lock_timeout` seconds.

    `only_below` (0-1): ANALYZE each table first and cluster it only when its user order
    (see the module docstring) is below this; the others are returned with clustered=False."""
    if storage.backend != "postgresql":
        raise ConfigurationError(
            "Clustering by user is a PostgreSQL operation. SQLite keeps rows in rowid order and "
            "searches a user's rows through its own indexes: there is nothing to do."
        )
    chosen = _tables(tables)
    seconds = check_lock_timeout(lock_timeout)
    bound = check_only_below(only_below)
    schema = storage.schema or DEFAULT_SCHEMA
    from reflexio_store.migrations import migration_engine

    engine = migration_engine(storage)
    done: list[ClusteredTable] = []
    try:
        for table in chosen:
            qualified = f'"{schema}"."{table}"'
            started = time.perf_counter()
            order = None
            if bound is not None:
                order, rows, pages = _user_order(engine, storage, schema, table)
                if order is None or order >= bound:
                    done.append(ClusteredTable(table, rows, pages, 0.0, order, clustered=False))
                    continue
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'"))
                    conn.execute(text(f"LOCK TABLE {qualified} IN ACCESS EXCLUSIVE MODE"))
                    conn.execute(text(f'CLUSTER {qualified} USING "{USER_ORDER_INDEXES[table]}"'))
                    rows, pages = _analyze(conn, qualified)
            except DBAPIError as exc:
                if is_unavailable(exc):
                    raise unavailable_error(exc, storage.writer_url, "cluster tables in") from None
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                busy = True
            else:
                busy = False
            if busy:
                raise DatabaseBusyError(
                    f"Could not lock {schema}.{table} within {seconds:g} s: another transaction "
                    f"is using it. {table} was left as it was"
                    + (f" ({', '.join(t.table for t in done)} already clustered)" if done else "")
                    + ". Retry when it is idle, or with a longer lock timeout."
                )
            done.append(ClusteredTable(table, rows, pages, time.perf_counter() - started, order))
    finally:
        engine.dispose()
    return done
