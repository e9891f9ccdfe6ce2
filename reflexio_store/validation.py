"""The one input vocabulary of every public store operation.

Each check runs in plain Python before any SQL, raises ValidationError naming the argument (and
never echoing a secret), and gives the same answer on SQLite and PostgreSQL: it refuses what
either database would refuse or store differently, so both databases see the same inputs.

- text: `str`, no NUL, no lone surrogate (it must encode as UTF-8), at most MAX_TEXT_BYTES.
- keys (ids, names, values compared with indexed columns): text of at most MAX_KEY_BYTES, so
  that a PostgreSQL index entry never refuses what SQLite stores.
- ids and id lists: text keys, or `int` (not bool) in the signed 64-bit range; a list is a
  non-empty list of such scalars (not a single text, not nested lists), at most MAX_BATCH.
- integers: `int` (not bool) within the operation's bounds. One page rule: limit 1..MAX_LIMIT
  (None only where an operation documents "no limit"), offset 0..MAX_OFFSET.
- numbers: `int` or `float` (not bool), finite and within the operation's bounds (10**400,
  NaN and infinities refused before any float conversion). Durations: seconds or a timedelta,
  greater than 0 and at most the operation's maximum.
- datetimes: timezone-aware, with a UTC value within years 1..9999; returned in UTC.
- JSON: dict/list/tuple/str/int/float/bool/None; text keys; finite floats; 64-bit integers;
  keys and strings follow the text rule; depth <= MAX_JSON_DEPTH; about MAX_JSON_BYTES encoded.
- filters: one text value or a non-empty list (`text_filter`), enum lists (`enum_filter`),
  metadata filters (JSON objects).

Checks are a few microseconds each: they run on hot paths (workflow saves, single gets).
Exceptions are raised outside `except` blocks so that no driver or codec exception (whose
`.object` could hold a password) is attached to them as `__context__`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal, TypeVar, overload

import numpy as np

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ValidationError

MAX_TEXT_BYTES = 1_000_000
"""Largest text field accepted (1 MB of UTF-8); bigger payloads are refused, not truncated."""
MAX_SEARCHED_BYTES = 300_000
"""Most text the full-text-searched fields of one row hold together: PostgreSQL's tsvector takes
at most 1 MB and needs up to about 3 bytes per byte of text (many short distinct words), so a
longer document would be stored by SQLite and refused by PostgreSQL."""
MAX_KEY_BYTES = 1024
"""Largest id, name or filter value: two of them still fit one PostgreSQL b-tree index entry
(2704 bytes), so an indexed column never refuses what SQLite would store."""
MAX_JSON_BYTES = 4_000_000
MAX_JSON_DEPTH = 64
MAX_BATCH = 50_000
"""Most rows or ids in one call."""
MAX_LIMIT = 10_000
MAX_OFFSET = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
FLOAT_MAX = sys.float_info.max

E = TypeVar("E", Status, PlaybookReviewStatus)


def _type_name(value: Any) -> str:
    return type(value).__name__


def shown_value(value: Any) -> str:
    """How an unrecognised word appears in a message: short text quoted, else its type name."""
    return repr(value) if isinstance(value, str) and len(value) <= 40 else _type_name(value)


def shown_key(value: Any) -> str:
    """A row's key in a message: an integer id as it is, short text quoted, else its type (a
    stored value may be a megabyte, or a secret pasted into the wrong column)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**20:
        return str(value)
    return shown_value(value)


# -- text ------------------------------------------------------------------------------------


def _utf8_size(value: str) -> int:
    """Encoded size, or -1 when the text holds a lone surrogate (no UTF-8 form)."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def require_text(
    value: Any, field: str, *, allow_empty: bool = False, max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """Text both databases store unchanged: no NUL, valid UTF-8, at most `max_bytes`."""
    if type(value) is not str and not isinstance(value, str):
        raise ValidationError(f"{field} must be text, got {_type_name(value)}.")
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character, which databases cannot store.")
    size = _utf8_size(value)
    if size < 0:
        raise ValidationError(
            f"{field} contains a lone surrogate (invalid Unicode); it has no UTF-8 form."
        )
    if size > max_bytes:
        raise ValidationError(f"{field} is larger than {max_bytes} bytes; split or shorten it.")
    if not allow_empty and not value.strip():
        raise ValidationError(f"{field} must not be empty.")
    # str.__str__ copies a subclass's characters (the ones just checked); str() would call an
    # overridden __str__, which could return anything.
    return value if type(value) is str else str.__str__(value)


def optional_text(value: Any, field: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str | None:
    return (
        None if value is None else require_text(value, field, allow_empty=True, max_bytes=max_bytes)
    )


def optional_query(value: Any, field: str = "query") -> str | None:
    """Search text as typed by a person: None or `str` of at most MAX_TEXT_BYTES characters.
    NUL and lone surrogates are allowed here: the query parser drops them (they are separators,
    never sent to a database)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, got {_type_name(value)}.")
    if len(value) > MAX_TEXT_BYTES:
        raise ValidationError(f"{field} is longer than {MAX_TEXT_BYTES} characters; shorten it.")
    return value


def require_key(value: Any, field: str) -> str:
    """A non-empty id or name (an indexed column): text of at most MAX_KEY_BYTES."""
    return require_text(value, field, max_bytes=MAX_KEY_BYTES)


def optional_key(value: Any, field: str) -> str | None:
    return None if value is None else require_key(value, field)


def filter_key(value: Any, field: str) -> str | None:
    """A value compared with an indexed column in a filter: None (no filter) or text of at most
    MAX_KEY_BYTES; empty text is allowed (it matches rows whose value is empty)."""
    if value is None:
        return None
    return require_text(value, field, allow_empty=True, max_bytes=MAX_KEY_BYTES)


# -- lists -----------------------------------------------------------------------------------


def _length(items: Any) -> int:
    """len(items); a length beyond the machine's index range (range(10**20)) counts as huge."""
    try:
        return len(items)
    except OverflowError:
        return sys.maxsize


def check_batch(items: Any, what: str) -> None:
    size = _length(items)
    if size > MAX_BATCH:
        raise ValidationError(
            f"{size} {what} in one call; the limit is {MAX_BATCH}. Send smaller batches."
        )


def as_list(value: Any, field: str, *, most: int = MAX_BATCH) -> list[Any]:
    """A list from a list, tuple or other iterable; a single text, bytes, mapping or 0-d array
    is refused (a str would otherwise be read as a list of one-character ids). An iterable that
    is not a list is read up to `most` + 1 items, so an endless generator cannot hang the call."""
    if isinstance(value, list):
        return value
    if (
        isinstance(value, (str, bytes, bytearray, Mapping))
        or not isinstance(value, Iterable)
        or (isinstance(value, np.ndarray) and value.ndim == 0)
    ):
        raise ValidationError(f"{field} must be a list, got {_type_name(value)}.")
    items = list(islice(value, most + 1))
    if len(items) > most:
        raise ValidationError(
            f"{field} holds more than {most} items; the limit is {most}. Send smaller batches."
        )
    return items


def _id_list(values: Any, field: str) -> list[Any]:
    items = as_list(values, field)
    if not items:
        raise ValidationError(f"No {field} given: pass at least one.")
    check_batch(items, field)
    return items


def text_ids(values: Any, field: str) -> list[str]:
    """A non-empty list of text ids, de-duplicated in order."""
    return list(dict.fromkeys(require_key(v, field) for v in _id_list(values, field)))


def require_int_id(value: Any, field: str) -> int:
    """An integer id: an `int` (not bool) in the signed 64-bit range of the key columns."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer id, got {_type_name(value)}.")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError(f"{field} is outside the 64-bit integer range of ids.")
    return int(value)


def int_ids(values: Any, field: str) -> list[int]:
    """A non-empty list of integer ids, de-duplicated in order."""
    return list(dict.fromkeys(require_int_id(v, field) for v in _id_list(values, field)))


def text_filter(value: Any, field: str) -> list[str] | None:
    """None (no filter), one text value, or a non-empty list of them."""
    if value is None:
        return None
    if isinstance(value, str):
        return [require_text(value, field, allow_empty=True, max_bytes=MAX_KEY_BYTES)]
    items = as_list(value, field)
    if not items:
        raise ValidationError(f"{field} is an empty list: pass None for any {field}.")
    check_batch(items, field)
    return list(
        dict.fromkeys(
            require_text(v, field, allow_empty=True, max_bytes=MAX_KEY_BYTES) for v in items
        )
    )


def text_list(value: Any, field: str) -> list[str]:
    """A stored list of text (tags, extractor names): None is the empty list."""
    if value is None:
        return []
    items = as_list(value, field)
    check_batch(items, field)
    return [require_text(v, field, allow_empty=True, max_bytes=MAX_KEY_BYTES) for v in items]


# -- enums -----------------------------------------------------------------------------------


def choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    """One of the `allowed` words. Checked as text first: `in` on an array-like value would
    compare element-wise and raise numpy's "truth value is ambiguous"."""
    if isinstance(value, str) and value in allowed:
        return value if type(value) is str else str.__str__(value)
    shown = shown_value(value)
    raise ValidationError(f"Unknown {what} {shown}; expected one of: {', '.join(allowed)}.")


def parse_enum(enum_cls: type[E], value: Any, field: str = "status") -> E:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        for member in enum_cls:
            if member.value == value:
                return member
    allowed = ", ".join(m.value for m in enum_cls)
    shown = shown_value(value)
    raise ValidationError(f"Unknown {field} {shown}; expected one of: {allowed}.")


def enum_filter(enum_cls: type[E], value: Any, field: str = "status") -> list[E] | None:
    """None (any), one value, or a non-empty list of values of `enum_cls`."""
    if value is None:
        return None
    if isinstance(value, (str, enum_cls)):
        return [parse_enum(enum_cls, value, field)]
    items = as_list(value, field)
    if not items:
        raise ValidationError(f"{field} filter is an empty list; pass None for any {field}.")
    return list(dict.fromkeys(parse_enum(enum_cls, v, field) for v in items))


# -- numbers ---------------------------------------------------------------------------------


def require_int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, got {_type_name(value)}.")
    if not low <= value <= high:
        raise ValidationError(f"{field} must be an integer between {low} and {high}.")
    return int(value)


def optional_int(value: Any, field: str, low: int, high: int) -> int | None:
    return None if value is None else require_int(value, field, low, high)


@overload
def page(limit: Any, offset: Any) -> tuple[int, int]: ...
@overload
def page(limit: Any, offset: Any, *, unlimited: Literal[True]) -> tuple[int | None, int]: ...
def page(limit: Any, offset: Any, *, unlimited: bool = False) -> tuple[int | None, int]:
    """The one pagination rule: limit 1..MAX_LIMIT (None, "no limit", only where `unlimited`),
    offset 0..MAX_OFFSET."""
    if not (unlimited and limit is None):
        limit = require_int(limit, "limit", 1, MAX_LIMIT)
    return limit, require_int(offset, "offset", 0, MAX_OFFSET)


def require_number(value: Any, field: str, low: float, high: float) -> float:
    """A finite int or float within [low, high]; NaN, infinities and 10**400 are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number, got {_type_name(value)}.")
    # Compared before any float() so a huge int cannot overflow; NaN fails every comparison.
    if not low <= value <= high:
        raise ValidationError(f"{field} must be a finite number from {low:g} to {high:g}.")
    return float(value)


def optional_number(value: Any, field: str, low: float, high: float) -> float | None:
    return None if value is None else require_number(value, field, low, high)


def optional_bool(value: Any, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"{field} must be True, False or None, got {_type_name(value)}.")
    return value


def require_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be True or False, got {_type_name(value)}.")
    return value


def duration(value: Any, field: str, max_seconds: float) -> timedelta:
    """A positive duration: seconds (int or float) or a timedelta, at most `max_seconds`
    (bounded so that `now + duration` cannot overflow)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValidationError(
            f"{field} must be a number of seconds or a timedelta, got {_type_name(value)}."
        )
    if not 0 < seconds <= max_seconds:
        raise ValidationError(
            f"{field} must be a finite number of seconds greater than 0 and at most "
            f"{max_seconds:g}."
        )
    return timedelta(seconds=seconds)


# -- datetimes -------------------------------------------------------------------------------


def require_aware(value: Any, field: str) -> datetime:
    """A timezone-aware datetime, returned in UTC. Its UTC value must exist (years 1..9999):
    datetime(1, 1, 1, tzinfo=+14h) is year 0 in UTC, which neither database stores."""
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a timezone-aware datetime, got {_type_name(value)}."
        )
    if value.tzinfo is UTC:
        return value
    offset: timedelta | Literal[False] | None
    try:
        offset = value.utcoffset()
    except (ValueError, TypeError):
        # A tzinfo whose offset is 24 hours or more, or not a timedelta.
        offset = False
    if offset is False:
        raise ValidationError(
            f"{field} has a tzinfo whose UTC offset is not a timedelta within 24 hours."
        )
    if offset is None:
        raise ValidationError(
            f"{field} is a naive datetime; pass a timezone-aware one, e.g. "
            "datetime.now(timezone.utc)."
        )
    if 1 < value.year < 9999:
        return value.astimezone(UTC)
    naive = value.replace(tzinfo=None)
    # Checked before subtracting, so the conversion itself cannot raise OverflowError.
    if (naive.year == 1 and naive - datetime.min < offset) or (
        naive.year == 9999 and datetime.max - naive < -offset
    ):
        raise ValidationError(f"{field} is outside the years 1 to 9999 once converted to UTC.")
    return (naive - offset).replace(tzinfo=UTC)


def optional_aware(value: Any, field: str) -> datetime | None:
    return None if value is None else require_aware(value, field)


# -- JSON ------------------------------------------------------------------------------------


def _json_problem(value: Any, depth: int, budget: list[int]) -> str | None:
    """What makes `value` unfit for both databases' JSON columns, or None. `budget` holds the
    bytes still allowed; each node spends about its encoded size."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            return "text containing a NUL character"
        size = _utf8_size(value)
        if size < 0:
            return "text containing a lone surrogate (invalid Unicode)"
        budget[0] -= size + 2
        return None
    if kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
        if isinstance(value, Mapping) and not isinstance(value, dict):
            # json.dumps encodes dicts (and their subclasses) only.
            return (
                f"a {_type_name(value)} (a JSON object inside a value must be a dict: convert "
                "it with dict())"
            )
        if depth >= MAX_JSON_DEPTH:
            return f"nesting deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, Mapping):
            for key, item in value.items():
                if type(key) is not str and not isinstance(key, str):
                    return f"a {_type_name(key)} key (JSON object keys must be text)"
                problem = _json_problem(str(key), depth, budget) or _json_problem(
                    item, depth + 1, budget
                )
                if problem:
                    return problem
        else:
            for item in value:
                problem = _json_problem(item, depth + 1, budget)
                if problem:
                    return problem
        budget[0] -= 2
        return f"more than {MAX_JSON_BYTES} bytes of JSON" if budget[0] < 0 else None
    if kind is bool or value is None:
        budget[0] -= 5
        return None
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not INT64_MIN <= value <= INT64_MAX:
            return "an integer outside the 64-bit range"
        budget[0] -= 20
        return None
    if kind is float or isinstance(value, float):
        if not -FLOAT_MAX <= value <= FLOAT_MAX:
            return "a NaN or infinite number"
        budget[0] -= 24
        return None
    if isinstance(value, str):
        return _json_problem(str.__str__(value), depth, budget)
    if isinstance(value, list):
        return _json_problem(list(value), depth, budget)
    return (
        f"a {_type_name(value)} (use str, int, float, bool, None, lists and dicts with "
        "text keys; convert datetimes with .isoformat())"
    )


def check_json(value: Any, field: str) -> Any:
    """`value` if both databases' JSON columns store it unchanged, else ValidationError."""
    budget = [MAX_JSON_BYTES]
    problem = _json_problem(value, 0, budget)
    if problem is None and budget[0] < 0:
        problem = f"more than {MAX_JSON_BYTES} bytes of JSON"
    if problem is not None:
        raise ValidationError(f"{field} is not storable JSON: it holds {problem}.")
    return value


def json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object (mapping) that passes check_json, as a dict."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a mapping (JSON object), got {_type_name(value)}.")
    result = value if type(value) is dict else dict(value)
    check_json(result, field)
    return result


MAX_FILTER_DEPTH = 16
"""Deepest JSON pattern a filter takes: SQLite compiles each level into nested SQL, and the
compiler recurses once per level (about 60 levels exhaust Python's recursion limit)."""


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max(map(_depth, value), default=0)
    return 0


def json_filter(value: Any, field: str) -> dict[str, Any]:
    """A JSON object used as a containment pattern: json_object, nested at most
    MAX_FILTER_DEPTH levels."""
    result = json_object(value, field)
    if _depth(result) > MAX_FILTER_DEPTH:
        raise ValidationError(
            f"{field} is nested deeper than {MAX_FILTER_DEPTH} levels; a filter pattern this "
            "deep cannot be compiled. Filter on a shallower part of the document."
        )
    return result


def optional_json_object(value: Any, field: str) -> dict[str, Any] | None:
    return None if value is None else json_object(value, field)


def json_list(value: Any, field: str) -> list[Any]:
    """A JSON array (any non-text iterable) that passes check_json, as a list."""
    # Each JSON item takes at least one byte, so MAX_JSON_BYTES items is a safe read bound.
    result = as_list(value, field, most=MAX_JSON_BYTES)
    check_json(result, field)
    return result


def optional_json_list(value: Any, field: str) -> list[Any] | None:
    return None if value is None else json_list(value, field)


# -- embeddings ------------------------------------------------------------------------------


def as_vector(value: Any, dimensions: int | None) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Validate an embedding and return it as a float32 array; raise ValidationError otherwise."""
    if isinstance(value, (str, bytes, Mapping)):
        raise ValidationError("An embedding must be a sequence of numbers, not text or a mapping.")
    array: np.ndarray[Any, np.dtype[np.float32]] | None
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is None:
        raise ValidationError("An embedding must be a sequence of numbers.")
    if array.ndim != 1 or (dimensions is not None and array.shape[0] != dimensions):
        got = array.shape[0] if array.ndim == 1 else f"shape {array.shape}"
        raise ValidationError(
            f"Embedding has {got} dimensions; this store is configured for {dimensions} "
            "(REFLEXIO_EMBEDDING_DIMENSIONS)."
        )
    if not np.isfinite(array).all():
        raise ValidationError(
            "Embedding contains NaN or infinite values (or numbers beyond float32); pass finite "
            "numbers."
        )
    if not array.any():
        raise ValidationError("Embedding is all zeros; cosine similarity is undefined for it.")
    return array


def check_embedding(value: Any, dimensions: int, field: str = "embedding") -> list[float] | None:
    """None stays None; anything else must be `dimensions` finite numbers."""
    if value is None:
        return None
    return as_vector_named(value, dimensions, field).tolist()  # type: ignore[no-any-return]


def as_vector_named(
    value: Any, dimensions: int, field: str
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """as_vector, with the argument's name in the message."""
    try:
        return as_vector(value, dimensions)
    except ValidationError as exc:
        message = str(exc)
    raise ValidationError(f"{field}: {message}")
