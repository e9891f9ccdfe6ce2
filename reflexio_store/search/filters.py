"""WHERE clauses for search filters, validated. Each helper returns a list of conditions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ValidationError
from reflexio_store.validation import parse_enum, require_aware

Conditions = list[ColumnElement[bool]]

StatusFilter = Status | str | Sequence[Status | str] | None
ReviewStatusFilter = PlaybookReviewStatus | str | Sequence[PlaybookReviewStatus | str] | None


def _values(value: Any, field: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    values = list(value)
    if not values:
        raise ValidationError(f"{field} is an empty list: pass None for any {field}.")
    return values


def equals(column: ColumnElement[Any], value: str | Sequence[str] | None, field: str) -> Conditions:
    """column = value (or IN values); nothing when value is None."""
    if value is None:
        return []
    values = _values(value, field)
    for v in values:
        if not isinstance(v, str):
            raise ValidationError(f"{field} must be text, got {type(v).__name__}.")
        if "\x00" in v:
            raise ValidationError(f"{field} contains a NUL character.")
    return [column == values[0]] if len(values) == 1 else [column.in_(values)]


def status_in(column: ColumnElement[Any], status: StatusFilter) -> Conditions:
    """Lifecycle status filter: one status, a list of them, or None for any."""
    if status is None:
        return []
    values = [parse_enum(Status, s) for s in _values(status, "status")]
    return [column == values[0]] if len(values) == 1 else [column.in_(values)]


def review_status_in(column: ColumnElement[Any], status: ReviewStatusFilter) -> Conditions:
    if status is None:
        return []
    values = [
        parse_enum(PlaybookReviewStatus, s, "playbook_status")
        for s in _values(status, "playbook_status")
    ]
    return [column == values[0]] if len(values) == 1 else [column.in_(values)]


def created_between(
    column: ColumnElement[Any], start: datetime | None, end: datetime | None
) -> Conditions:
    """start <= column < end; either bound may be None."""
    start = require_aware(start, "created_after")
    end = require_aware(end, "created_before")
    conditions: Conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def contains_all(
    column: ColumnElement[Any],
    values: str | Sequence[str] | None,
    field: str,
    contains: Callable[[ColumnElement[Any], str], ColumnElement[bool]],
) -> Conditions:
    """The JSON list in column holds every one of values; `contains(column, value)` is the
    per-dialect containment test (reflexio_store.store.memories.json_list_contains)."""
    if values is None:
        return []
    items = _values(values, field)
    for v in items:
        if not isinstance(v, str):
            raise ValidationError(f"{field} values must be text, got {type(v).__name__}.")
    return [contains(column, v) for v in dict.fromkeys(items)]


def not_expired(column: ColumnElement[Any], now: datetime | None = None) -> Conditions:
    moment = now if now is not None else datetime.now(UTC)
    return [or_(column.is_(None), column > moment)]
