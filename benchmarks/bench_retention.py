"""Retention on the publish path: `enforce_row_limits()` with nothing to delete, next to a table
one row under its limit (249,999 profiles with the default limit of 250,000).

Rows are generated in SQL (INSERT ... SELECT over a series): what is measured is the check, not
the load, and the rows need no embeddings for it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from reflexio_store import SessionFactory
from reflexio_store.store import Store

_SQLITE_SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
_SQLITE_PROFILES = (
    _SQLITE_SERIES + "INSERT INTO profiles (profile_id, user_id, content, extractor_names, status, "
    "tags, created_at) SELECT :tag || i, 'u' || (i % 50), 'retention row ' || i, '[]', "
    "'current', '[]', datetime('2026-01-01', '+' || i || ' seconds') || '.000000' FROM n"
)
_SQLITE_REQUESTS = (
    _SQLITE_SERIES + "INSERT INTO requests (request_id, user_id, created_at) SELECT :tag || i, "
    "'u' || (i % 50), datetime('2026-01-01', '+' || i || ' seconds') || '.000000' FROM n"
)
_SQLITE_INTERACTIONS = (
    _SQLITE_SERIES + "INSERT INTO interactions (request_id, user_id, content, tools_used, "
    "created_at) SELECT :tag || (1 + i % :requests), 'u' || (i % 50), 'said ' || i, '[]', "
    "datetime('2026-01-01', '+' || i || ' seconds') || '.000000' FROM n"
)
_PG_SERIES = "FROM generate_series(1, :count) AS s(i)"
_PG_PROFILES = (
    "INSERT INTO profiles (profile_id, user_id, content, extractor_names, status, tags, "
    "created_at) SELECT :tag || i, 'u' || (i % 50), 'retention row ' || i, '[]'::jsonb, "
    "'current', '[]'::jsonb, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' "
    + _PG_SERIES
)
_PG_REQUESTS = (
    "INSERT INTO requests (request_id, user_id, created_at) SELECT :tag || i, 'u' || (i % 50), "
    "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' " + _PG_SERIES
)
_PG_INTERACTIONS = (
    "INSERT INTO interactions (request_id, user_id, content, tools_used, created_at) "
    "SELECT :tag || (1 + i % :requests), 'u' || (i % 50), 'said ' || i, '[]'::jsonb, "
    "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' " + _PG_SERIES
)


def fill(factory: SessionFactory, profiles: int, requests: int, interactions: int) -> float:
    """Insert generated rows into an empty store; seconds taken."""
    sqlite = factory.backend == "sqlite"
    # Text SQL is not schema-translated: name the organization's schema on PostgreSQL.
    prefix = "" if sqlite else f'"{factory.storage.schema}".'
    started = time.perf_counter()
    with factory.writer() as session:
        for sql, count in (
            (_SQLITE_PROFILES if sqlite else _PG_PROFILES, profiles),
            (_SQLITE_REQUESTS if sqlite else _PG_REQUESTS, requests),
            (_SQLITE_INTERACTIONS if sqlite else _PG_INTERACTIONS, interactions),
        ):
            if count:
                params: dict[str, Any] = {"count": count, "tag": "ret-", "requests": requests}
                session.execute(text(sql.replace("INTO ", f"INTO {prefix}", 1)), params)
    if not sqlite:
        with factory.writer_engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("profiles", "requests", "interactions"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {prefix}{table}")
    return time.perf_counter() - started


def measure(store: Store, calls: int, warmup: int = 5) -> dict[str, float]:
    """Latency of `store.enforce_row_limits()` (default limits, from the environment) in ms."""
    for _ in range(warmup):
        if store.enforce_row_limits():
            raise RuntimeError("the retention benchmark expects nothing to delete")
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        deleted = store.enforce_row_limits()
        samples.append((time.perf_counter() - start) * 1000)
        if deleted:
            raise RuntimeError(f"the retention benchmark deleted rows: {deleted}")
    samples.sort()
    return {
        "p50": samples[len(samples) // 2],
        "p95": samples[int(len(samples) * 0.95)],
        "min": samples[0],
        "n": float(len(samples)),
    }
