"""Turning caller input into rows: field converters, the entity-kind descriptor, id lists.

Inputs are plain mappings, validated up front in plain Python against a table of converters
(one per insertable field); unknown keys are refused. An `EntityKind` describes one memory
entity (profiles, user playbooks, agent playbooks) for the generic operations in `crud` and
`lifecycle`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import InstrumentedAttribute

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ValidationError
from reflexio_store.models.base import Base
from reflexio_store.validation import (
    MAX_SEARCHED_BYTES,
    as_vector_named,
    int_ids,
    json_list,
    optional_aware,
    optional_json_object,
    optional_key,
    optional_text,
    parse_enum,
    require_key,
    require_text,
    text_ids,
    text_list,
)

M = TypeVar("M", bound=Base)

ID_CHUNK = 5_000
"""Ids per IN (...) list: below SQLite's and PostgreSQL's bound-parameter limits."""


def batch_timestamps(count: int, now: datetime | None = None) -> list[datetime]:
    """One UTC "now" per batch, plus one microsecond per row: rows of a batch keep their order
    when listed newest first, even on a clock that returns the same instant twice."""
    base = now if now is not None else datetime.now(UTC)
    step = timedelta(microseconds=1)
    return [base + step * i for i in range(count)]


def chunks(values: Sequence[Any], size: int = ID_CHUNK) -> Iterable[Sequence[Any]]:
    """Consecutive slices of `values`, so that huge id lists stay under parameter limits."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# Field converters: (value, field name, embedding dimensions) -> the value to store.
Converter = Callable[[Any, str, int], Any]


def to_text(value: Any, field: str, _dims: int) -> str:
    return require_text(value, field)


def to_key(value: Any, field: str, _dims: int) -> str:
    """A required id or name kept in an indexed column."""
    return require_key(value, field)


def searched_text(fields: int, *, optional: bool = False, empty: bool = False) -> Converter:
    """A converter for a full-text-searched field of a table that searches `fields` fields:
    each holds its share of MAX_SEARCHED_BYTES."""
    max_bytes = MAX_SEARCHED_BYTES // fields

    def convert(value: Any, field: str, _dims: int) -> str | None:
        if value is None and (optional or empty):
            return "" if empty else None
        return require_text(value, field, allow_empty=optional or empty, max_bytes=max_bytes)

    return convert


def to_optional_text(value: Any, field: str, _dims: int) -> str | None:
    return optional_text(value, field)


def to_optional_key(value: Any, field: str, _dims: int) -> str | None:
    """An optional id or name kept in an indexed column: None, or non-empty text. For a
    caller-supplied id, None means "generate one"."""
    return optional_key(value, field)


def to_datetime(value: Any, field: str, _dims: int) -> datetime | None:
    return optional_aware(value, field)


def to_embedding(value: Any, field: str, dims: int) -> Any:
    return None if value is None else as_vector_named(value, dims, field)


def to_json_object(value: Any, field: str, _dims: int) -> dict[str, Any] | None:
    return optional_json_object(value, field)


def to_json_list(value: Any, field: str, _dims: int) -> list[Any]:
    return [] if value is None else json_list(value, field)


def to_text_list(value: Any, field: str, _dims: int) -> list[str]:
    return text_list(value, field)


def to_status(value: Any, field: str, _dims: int) -> Status:
    return parse_enum(Status, value, field)


def to_review_status(value: Any, field: str, _dims: int) -> PlaybookReviewStatus:
    return parse_enum(PlaybookReviewStatus, value, field)


def convert_row(
    item: Any,
    fields: Mapping[str, Converter],
    dims: int,
    what: str,
    index: int | None = None,
) -> dict[str, Any]:
    """Validate one input mapping against `fields`; unknown keys are refused (typo safety)."""
    where = f"{what}[{index}]" if index is not None else what
    if not isinstance(item, Mapping):
        raise ValidationError(f"{where} must be a mapping (dict), got {type(item).__name__}.")
    unknown = [key for key in item if key not in fields]
    if unknown:
        raise ValidationError(
            f"{where} has unknown field(s) {sorted(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(fields))}."
        )
    out: dict[str, Any] = {}
    for key, value in item.items():
        try:
            out[key] = fields[key](value, key, dims)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}") from None
    return out


def _none() -> None:
    return None


def _empty_list() -> list[Any]:
    return []


def field_defaults(
    fields: Mapping[str, Converter], **special: Callable[[], Any]
) -> dict[str, Callable[[], Any]]:
    """A default factory per field: [] for list fields, None otherwise, unless `special`."""
    out: dict[str, Callable[[], Any]] = {}
    for name, conv in fields.items():
        out[name] = _empty_list if conv in (to_json_list, to_text_list) else _none
    out.update(special)
    return out


@dataclass(frozen=True)
class EntityKind(Generic[M]):
    """One memory entity for the generic operations: its model, public id and fields."""

    model: type[M]
    what: str
    key: str  # the public id attribute
    fields: Mapping[str, Converter]  # insertable fields (besides the generated key)
    required: tuple[str, ...]
    defaults: Mapping[str, Callable[[], Any]]
    updatable: frozenset[str]
    # A text key may be given by the caller (else a uuid4 hex); an integer key is generated.
    text_key: bool = False
    # The integer primary key, the tie-breaker after created_at (defaults to `key`).
    order_by: str | None = None
    # Set to now on every update unless the caller gives it.
    modified_at: str | None = None

    def ids(self, ids: Iterable[Any]) -> list[Any]:
        """Validate public ids of this kind (text for profiles, integers for playbooks)."""
        what = f"{self.what} ids"
        return text_ids(ids, what) if self.text_key else int_ids(ids, what)

    @property
    def key_column(self) -> InstrumentedAttribute[Any]:
        return getattr(self.model, self.key)  # type: ignore[no-any-return]

    @property
    def order_key(self) -> InstrumentedAttribute[Any]:
        """The integer primary key: the tie-breaker after created_at."""
        return getattr(self.model, self.order_by or self.key)  # type: ignore[no-any-return]

    def column(self, name: str) -> InstrumentedAttribute[Any]:
        return getattr(self.model, name)  # type: ignore[no-any-return]
