"""Add, get, update, delete and count for any memory entity described by an `EntityKind`.

Every function takes the session first and runs inside the caller's one transaction (the Store
opens it): a call either writes everything or nothing. Bulk inserts go through one
`insert(Model)` executed with a list of parameter dicts (SQLAlchemy's insertmanyvalues), never
one `session.add` per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reflexio_store.dialect import dialect_name
from reflexio_store.enums import Status
from reflexio_store.errors import ConflictError, NotFoundError, ValidationError
from reflexio_store.store._operation import embedding_dimensions
from reflexio_store.store.bulk_copy import COPY_MIN_ROWS, copy_rows
from reflexio_store.store.rows import EntityKind, M, batch_timestamps, chunks, convert_row
from reflexio_store.validation import check_batch, shown_key


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched."""
    return int(cast(CursorResult[Any], result).rowcount)


def prepare_rows(
    session: Session, kind: EntityKind[Any], items: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Validated rows with every default filled in, ready for one bulk INSERT."""
    if isinstance(items, Mapping) or not isinstance(items, Sequence):
        raise ValidationError(f"Pass a list of {kind.what} mappings, not a single one.")
    check_batch(items, f"{kind.what}s")
    dims = embedding_dimensions(session)
    stamps = batch_timestamps(len(items))
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        given = convert_row(item, kind.fields, dims, kind.what, index)
        for name in kind.required:
            if given.get(name) is None:
                raise ValidationError(f"{kind.what}[{index}] needs {name}: pass it as text.")
        row = {
            name: (given[name] if name in given else make()) for name, make in kind.defaults.items()
        }
        if row.get("created_at") is None:
            row["created_at"] = stamps[index]
        if kind.text_key and row[kind.key] is None:
            row[kind.key] = uuid.uuid4().hex
        rows.append(row)
    return rows


def conflict(
    session: Session, column: Any, ids: Sequence[Any], advice: str, error: IntegrityError
) -> ConflictError:
    """The ConflictError for a refused batch, naming ids of it that already exist.

    The failed statement left the transaction unusable (PostgreSQL aborts it) and the whole
    operation is rolled back anyway: roll back now, so that the ids can be looked up."""
    from reflexio_store.db_errors import server_reason

    session.rollback()
    taken: list[Any] = []
    for part in chunks(list(ids)):
        taken += session.scalars(select(column).where(column.in_(part)).limit(3)).all()
        if len(taken) >= 3:
            break
    if not taken:
        return ConflictError(f"The database refused the batch: {server_reason(error)}.")
    shown = ", ".join(shown_key(value) for value in taken[:3])
    more = " (and more)" if len(taken) > 3 else ""
    return ConflictError(f"{column.key} {shown}{more} already exists; {advice}")


def add(session: Session, kind: EntityKind[Any], items: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Insert `items` in one batch; return their public ids in input order."""
    rows = prepare_rows(session, kind, items)
    if not rows:
        return []
    if kind.text_key:
        ids = [row[kind.key] for row in rows]
        if len(set(ids)) != len(ids):
            raise ValidationError(f"Duplicate {kind.key} values in one batch; make them unique.")
        try:
            if len(rows) >= COPY_MIN_ROWS and dialect_name(session) == "postgresql":
                copy_rows(session, kind.model, rows)
            else:
                session.execute(insert(kind.model), rows)
        except IntegrityError as exc:
            update_name = "update_" + kind.what.replace(" ", "_")
            advice = f"use {update_name} to change it, or omit {kind.key} to get a generated one."
            raise conflict(session, kind.key_column, ids, advice, exc) from None
        return ids
    statement = insert(kind.model).returning(kind.key_column, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows).all())


def get_by_ids(session: Session, kind: EntityKind[M], ids: Sequence[Any]) -> list[M]:
    """The rows with these public ids, in the order asked (missing ids are skipped)."""
    values = kind.ids(ids)
    by_id: dict[Any, M] = {}
    for part in chunks(values):
        for row in session.scalars(select(kind.model).where(kind.key_column.in_(part))):
            by_id[getattr(row, kind.key)] = row
    return [by_id[i] for i in values if i in by_id]


def get_one(session: Session, kind: EntityKind[M], key: Any) -> M | None:
    """The row with this public id, or None."""
    rows = get_by_ids(session, kind, [key])
    return rows[0] if rows else None


def count(session: Session, kind: EntityKind[Any], where: Sequence[ColumnElement[bool]]) -> int:
    return int(
        session.execute(select(func.count()).select_from(kind.model).where(*where)).scalar_one()
    )


def update_one(session: Session, kind: EntityKind[M], key: Any, changes: Mapping[str, Any]) -> M:
    """Change fields of one row and return it; NotFoundError if it does not exist."""
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationError(f"Pass the {kind.what} fields to change as a non-empty mapping.")
    not_updatable = [k for k in changes if k in kind.fields and k not in kind.updatable]
    if not_updatable:
        raise ValidationError(
            f"{kind.what} field(s) {sorted(not_updatable)} cannot be changed after creation."
        )
    (key,) = kind.ids([key])
    values = convert_row(changes, kind.fields, embedding_dimensions(session), kind.what)
    for name in kind.required:
        if name in values and values[name] is None:
            raise ValidationError(f"{kind.what} {name} cannot be set to None.")
    if kind.modified_at is not None and kind.modified_at not in values:
        values[kind.modified_at] = datetime.now(UTC)
    row = session.scalars(
        update(kind.model)
        .where(kind.key_column == key)
        .values(**values)
        .returning(kind.model)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"No {kind.what} with id {key!r}; check the id, or add it first.")
    return row


def delete_where(
    session: Session, kind: EntityKind[Any], where: Sequence[ColumnElement[bool]]
) -> int:
    """Delete the rows matching `where`; return how many."""
    result = session.execute(
        delete(kind.model).where(*where).execution_options(synchronize_session=False)
    )
    return rowcount(result)


def delete_by_ids(session: Session, kind: EntityKind[Any], ids: Sequence[Any]) -> int:
    values = kind.ids(ids)
    return sum(delete_where(session, kind, [kind.key_column.in_(part)]) for part in chunks(values))


def set_status(
    session: Session,
    kind: EntityKind[Any],
    where: Sequence[ColumnElement[bool]],
    new_status: Status,
) -> int:
    """Set `status` on the rows matching `where`; return how many changed."""
    result = session.execute(
        update(kind.model)
        .where(*where)
        .values(status=new_status)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)
