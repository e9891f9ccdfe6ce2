"""Copying every table between two reflexio_store databases (SQLite to PostgreSQL, most often).

Rows are read in primary-key order in batches and written through the same models on the target,
so each dialect's types convert them (float32 blobs become `vector`, ISO text becomes timestamptz).
Generated full-text columns are rebuilt by the target itself: PostgreSQL computes its tsvector,
SQLite's FTS5 triggers index each inserted row in the same transaction.

Each table's copy is verified twice: row counts, and a SHA-256 over the rows in key order computed
on both sides after the copy from values normalised to one form (UTC timestamps, float32 vectors,
canonical JSON). A target that already holds rows is refused unless `append=True`; appending skips
rows whose key already exists, so an interrupted copy is completed by running it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Column, Table, func, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.db_errors import server_reason
from reflexio_store.dialect import insert_or_ignore
from reflexio_store.errors import (
    ConfigurationError,
    ConflictError,
    ReflexioStoreError,
    ValidationError,
)
from reflexio_store.models import Base
from reflexio_store.sessions import SessionFactory
from reflexio_store.types import Embedding
from reflexio_store.validation import shown_key

DEFAULT_BATCH = 2_000
MAX_BATCH_SIZE = 50_000


def check_batch_size(value: object, name: str = "batch") -> int:
    """Rows per batch: an integer from 1 to MAX_BATCH_SIZE. The one place that limit lives;
    `name` is how the caller's user spelled it (the parameter from Python, --batch from the CLI)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ConfigurationError(
            f"{name} must be an integer from 1 to {MAX_BATCH_SIZE} (rows per batch), got "
            f"{shown_key(value)}."
        )
    return int(value)


Progress = Callable[[str, int, int], None]
"""Called as progress(table, rows_done, rows_total) after each batch."""


class CopyError(ReflexioStoreError):
    """The target refused a row of the source (the table and the batch are named)."""


class CopyVerificationError(ReflexioStoreError):
    """A copied table does not match its source (counts or checksum)."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    source_rows: int
    copied: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def verified(self) -> bool:
        return self.source_checksum == self.target_checksum


def copied_tables() -> list[Table]:
    """Every data table, parents before children (foreign keys)."""
    return [t for t in Base.metadata.sorted_tables if t.info.get("copy", True)]


def _columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if c.computed is None]


def _key(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns)


def _after(key: list[Column[Any]], last: tuple[Any, ...] | None) -> list[ColumnElement[bool]]:
    if last is None:
        return []
    if len(key) == 1:
        return [key[0] > last[0]]
    return [tuple_(*key) > tuple_(*last)]


def _batches(
    conn: Connection, table: Table, batch: int, keys: Sequence[tuple[Any, ...]] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in key order, `batch` at a time (keyset pagination, never OFFSET)."""
    columns = _columns(table)
    key = _key(table)
    last: tuple[Any, ...] | None = None
    while True:
        query = select(*columns).where(*_after(key, last)).order_by(*key).limit(batch)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][c.name] for c in key)


def _normalise(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def table_checksum(conn: Connection, table: Table, batch: int = DEFAULT_BATCH) -> tuple[int, str]:
    """(row count, SHA-256 over every row in key order), the same on SQLite and PostgreSQL."""
    digest = hashlib.sha256()
    columns = _columns(table)
    count = 0
    for rows in _batches(conn, table, batch):
        count += _digest_rows(iter(rows), columns, digest)
    return count, digest.hexdigest()


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def reset_sequence(conn: Connection, table: Table, schema: str | None) -> None:
    """Explicit ids were inserted: move PostgreSQL's sequence past them."""
    key = _key(table)
    if len(key) != 1 or key[0].autoincrement is not True:
        return
    qualified = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
    column = key[0]
    next_id = select(func.coalesce(func.max(column), 0) + 1).scalar_subquery()
    sequence = func.pg_get_serial_sequence(qualified, column.name)
    conn.execute(select(func.setval(sequence, next_id, False)))


def _check_fulltext(conn: Connection, table: Table) -> None:
    """SQLite: FTS5's own integrity check proves the full-text index matches the copied rows."""
    fts = f"{table.name}_fts"
    exists = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (fts,)
    ).first()
    if exists:
        # The name comes from our own metadata, never from input.
        conn.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")  # noqa: S608


def _same_database(source: SessionFactory, target: SessionFactory) -> bool:
    """One database, however its URL is spelled (./x.db and x.db, a relative and an absolute
    path, a symbolic link) for SQLite files."""
    if source.storage == target.storage:
        return True
    paths = [f.storage.writer_url.sqlite_path for f in (source, target)]
    if paths[0] is None or paths[1] is None:
        return False
    try:
        return paths[0].resolve() == paths[1].resolve()
    except OSError:
        return False


def copy_database(
    source: SessionFactory,
    target: SessionFactory,
    *,
    append: bool = False,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> list[TableCopy]:
    """Copy every table from `source` to `target` (both migrated to head) and verify each one."""
    batch = check_batch_size(batch)
    if _same_database(source, target):
        raise ConfigurationError(
            "The source and the target are the same database; nothing to copy."
        )
    source_dims, target_dims = (
        source.storage.embedding_dimensions,
        target.storage.embedding_dimensions,
    )
    if source_dims != target_dims:
        raise ConfigurationError(
            f"The source stores {source_dims}-dimensional embeddings and the target "
            f"{target_dims}: set REFLEXIO_EMBEDDING_DIMENSIONS the same for both."
        )
    tables = copied_tables()
    with source.writer_connection(write=False) as src:
        totals = {t.name: _count(src, t) for t in tables}
    if not append:
        with target.writer_connection(write=False) as dst:
            filled = [t.name for t in tables if _count(dst, t)]
        if filled:
            raise ConflictError(
                f"The target {target.storage.writer_url.masked()} already holds rows in "
                f"{', '.join(filled)}. Copy into an empty database, or pass append=True (--append "
                "on the command line) to add the rows whose keys it does not have yet (safe to "
                "re-run)."
            )
    results: list[TableCopy] = []
    for table in tables:
        results.append(_copy_table(source, target, table, totals[table.name], batch, progress))
    return results


def _copy_table(
    source: SessionFactory,
    target: SessionFactory,
    table: Table,
    total: int,
    batch: int,
    progress: Progress | None,
) -> TableCopy:
    keys = [c.name for c in _key(table)]
    with target.writer_connection(write=False) as dst:
        before = _count(dst, table)
    done = 0
    digest = hashlib.sha256()
    columns = _columns(table)
    # The source is hashed as it is read: the checksum covers exactly the rows that were written,
    # even if the source changes meanwhile.
    with source.writer_connection(write=False) as src:
        for rows in _batches(src, table, batch):
            _write_batch(target, table, keys, rows, done)
            _digest_rows(iter(rows), columns, digest)
            done += len(rows)
            if progress is not None:
                progress(table.name, done, total)
        source_keys = None if before == 0 else _keys(src, table)
    source_rows, source_sum = done, digest.hexdigest()
    with target.writer_connection() as dst:
        if dst.dialect.name == "postgresql":
            reset_sequence(dst, table, target.storage.schema)
        else:
            _check_fulltext(dst, table)
    with target.writer_connection(write=False) as dst:
        target_rows = _count(dst, table)
        # Appending: the target may hold more rows than the source; checksum the source's keys.
        _, target_sum = (
            table_checksum(dst, table, batch)
            if source_keys is None
            else _checksum_of_keys(dst, table, source_keys, batch)
        )
    report = TableCopy(
        table.name, source_rows, target_rows - before, target_rows, source_sum, target_sum
    )
    if not report.verified:
        raise CopyVerificationError(
            f"Table {table.name}: the target's rows differ from the source's after the copy "
            f"({source_rows} source rows, {target_rows} target rows, checksums differ). With "
            "append=True (--append), rows that already existed in the target under the same keys "
            "keep the target's values; copy into an empty database to replace them."
        )
    return report


def _write_batch(
    target: SessionFactory, table: Table, keys: list[str], rows: Sequence[Any], done: int
) -> None:
    """One batch in its own transaction. A row the target refuses (text with NUL, which SQLite
    stores and PostgreSQL does not) is named by table and key; the batch is rolled back, the
    earlier ones stay (run again with --append after fixing the source)."""
    failure: str | None = None
    try:
        with target.writer_connection() as dst:
            dst.execute(insert_or_ignore(dst, table, keys), rows)
        return
    except ValidationError as exc:  # a value our types refuse; outages propagate as they are
        failure = str(exc)
    except DBAPIError as exc:
        failure = server_reason(exc, target.storage.writer_url)
    first = dict(rows[0]._mapping) if hasattr(rows[0], "_mapping") else dict(rows[0])
    raise CopyError(
        f"Table {table.name}: the target refused a row of the batch starting at "
        f"{', '.join(f'{k}={shown_key(first.get(k))}' for k in keys)} (rows {done + 1}-"
        f"{done + len(rows)}): {failure}. That batch was not written; the {done} rows before it "
        "were. Fix the source row and run the copy again with append=True (--append)."
    )


def _digest_rows(rows: Iterator[Any], columns: list[Column[Any]], digest: Any) -> int:
    vectors = [c.name for c in columns if isinstance(c.type, Embedding)]
    others = [c.name for c in columns if not isinstance(c.type, Embedding)]
    count = 0
    for row in rows:
        mapping = row if isinstance(row, dict) else row._mapping
        values = [_normalise(mapping[name]) for name in others]
        digest.update(json.dumps(values, separators=(",", ":"), default=str).encode())
        for name in vectors:
            vector = mapping[name]
            digest.update(b"-" if vector is None else np.asarray(vector, np.float32).tobytes())
        digest.update(b"\n")
        count += 1
    return count


def _keys(conn: Connection, table: Table) -> list[tuple[Any, ...]]:
    key = _key(table)
    return [tuple(r) for r in conn.execute(select(*key).order_by(*key))]


def _checksum_of_keys(
    conn: Connection, table: Table, keys: list[tuple[Any, ...]], batch: int
) -> tuple[int, str]:
    digest = hashlib.sha256()
    columns = _columns(table)
    key = _key(table)
    count = 0
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        where = key[0].in_([k[0] for k in chunk]) if len(key) == 1 else tuple_(*key).in_(chunk)
        rows = conn.execute(select(*columns).where(where).order_by(*key))
        count += _digest_rows(iter(rows), columns, digest)
    return count, digest.hexdigest()
