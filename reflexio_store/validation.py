"""Input checks shared by store operations; each raises ValidationError before any write."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ValidationError
from reflexio_store.types import as_vector

MAX_TEXT_BYTES = 1_000_000
"""Largest text field accepted (1 MB); bigger payloads are refused, not truncated."""
MAX_JSON_BYTES = 4_000_000
MAX_BATCH = 50_000

E = TypeVar("E", Status, PlaybookReviewStatus)


def require_ids(ids: Iterable[Any], what: str = "ids") -> list[Any]:
    values = list(ids)
    if not values:
        raise ValidationError(f"No {what} given: pass at least one.")
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValidationError(f"Empty value in {what}: every id must be a non-empty value.")
    return values


def require_text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, got {type(value).__name__}.")
    if not allow_empty and not value.strip():
        raise ValidationError(f"{field} must not be empty.")
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character, which databases cannot store.")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise ValidationError(
            f"{field} is larger than {MAX_TEXT_BYTES} bytes; split or shorten it."
        )
    return value


def optional_text(value: Any, field: str) -> str | None:
    return None if value is None else require_text(value, field, allow_empty=True)


def check_batch(items: Sequence[Any], what: str) -> None:
    if len(items) > MAX_BATCH:
        raise ValidationError(
            f"{len(items)} {what} in one call; the limit is {MAX_BATCH}. Send smaller batches."
        )


def check_json(value: Any, field: str) -> str:
    """`value` as JSON text: serialisable (no NaN/infinity) and at most MAX_JSON_BYTES."""
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{field} is not JSON-serialisable ({exc}); use str, int, float, bool, None, lists "
            "and dicts with string keys (convert datetimes with .isoformat())."
        ) from None
    if len(encoded) > MAX_JSON_BYTES:
        raise ValidationError(f"{field} is larger than {MAX_JSON_BYTES} bytes of JSON; store less.")
    return encoded


def json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object (mapping) that passes check_json, as a dict."""
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{field} must be a mapping (JSON object), got {type(value).__name__}."
        )
    result = value if type(value) is dict else dict(value)
    check_json(result, field)
    return result


def parse_enum(enum_cls: type[E], value: Any, field: str = "status") -> E:
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise ValidationError(f"Unknown {field} {value!r}; expected one of: {allowed}.") from None


def check_embedding(value: Any, dimensions: int) -> list[float] | None:
    """None stays None; anything else must be `dimensions` finite numbers."""
    if value is None:
        return None
    array = as_vector(value, dimensions)
    return np.asarray(array, dtype=np.float32).tolist()  # type: ignore[no-any-return]


def require_aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValidationError(f"{field} must be a timezone-aware datetime.")
    return value
