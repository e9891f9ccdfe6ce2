"""The one WHERE-clause builder for list, count and search operations, validated.

Each helper returns a list of conditions (empty when the filter is not given), so a query
reads as `where(*equals(...), *status_in(...), ...)`. Text filters take one value or a list
of them (IN); JSON list filters (tags, extractor names) require every value given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.dialect import json_list_contains
from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ValidationError
from reflexio_store.validation import enum_filter, optional_aware, text_filter

Conditions = list[ColumnElement[bool]]
Column = ColumnElement[Any] | InstrumentedAttribute[Any]

StatusFilter = Status | str | Sequence[Status | str] | None
ReviewStatusFilter = PlaybookReviewStatus | str | Sequence[PlaybookReviewStatus | str] | None


def _one_or_in(column: Column, values: Sequence[Any]) -> Conditions:
    return [column == values[0]] if len(values) == 1 else [column.in_(values)]


def equals(column: Column, value: str | Sequence[str] | None, field: str) -> Conditions:
    """column = value (or IN values); nothing when value is None."""
    values = text_filter(value, field)
    return [] if values is None else _one_or_in(column, values)


def equals_or_null(column: Column, value: str | None) -> Conditions:
    """column = value, or column IS NULL when value is None (a scope, not an optional filter)."""
    return [column.is_(None)] if value is None else [column == value]


def status_in(column: Column, status: StatusFilter) -> Conditions:
    """Lifecycle status filter: one status, a list of them, or None for any."""
    values = enum_filter(Status, status)
    return [] if values is None else _one_or_in(column, values)


def review_status_in(column: Column, status: ReviewStatusFilter) -> Conditions:
    """Review status filter (agent playbooks): one, a list, or None for any."""
    values = enum_filter(PlaybookReviewStatus, status, "playbook_status")
    return [] if values is None else _one_or_in(column, values)


def created_between(
    column: Column,
    start: datetime | None,
    end: datetime | None,
    names: tuple[str, str] = ("created_after", "created_before"),
) -> Conditions:
    """start <= column < end; either bound may be None. `names` are the caller's argument
    names, for error messages."""
    start = optional_aware(start, names[0])
    end = optional_aware(end, names[1])
    conditions: Conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


MAX_CONTAINS_ALL = 100
"""Values a must-contain-every-one filter (tags, extractor_name) takes: each is a condition of
its own, and SQLite refuses an expression about 1,000 conditions deep."""


def contains_all(column: Column, values: str | Sequence[str] | None, field: str) -> Conditions:
    """The JSON list in column holds every one of values (the same on both databases)."""
    items = text_filter(values, field)
    if items is not None and len(items) > MAX_CONTAINS_ALL:
        raise ValidationError(
            f"{field} takes at most {MAX_CONTAINS_ALL} values (a row must hold every one of "
            f"them), got {len(items)}."
        )
    return [] if items is None else [json_list_contains(column, v) for v in items]


def not_expired(column: Column, now: datetime | None = None) -> Conditions:
    """column (an expiry time) is NULL or later than `now` (default: the current time)."""
    moment = optional_aware(now, "now") or datetime.now(UTC)
    return [or_(column.is_(None), column > moment)]
