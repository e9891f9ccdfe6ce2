"""Profiles, user playbooks, agent playbooks and their lifecycle.

Every function takes the session first and runs inside the caller's one transaction (the Store
opens it): a call either writes everything or nothing. Inputs are plain mappings, validated up
front in plain Python; bulk inserts go through one `insert(Model)` executed with a list of
parameter dicts (SQLAlchemy's insertmanyvalues), never one `session.add` per row.

Status lifecycle: generation writes new rows as ``pending``; `promote_pending_*` then archives the
scope's ``current`` rows and makes its ``pending`` rows ``current`` in one transaction, so a failed
generation leaves the previous current rows untouched.

`json_list_contains` is the one place that turns "this JSON list column contains a value" into
SQL for each dialect; search code reuses it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ConflictError, NotFoundError, ValidationError
from reflexio_store.models import AgentPlaybook, AgentPlaybookSource, Profile, UserPlaybook
from reflexio_store.models.base import Base
from reflexio_store.store._operation import embedding_dimensions, fresh, read, write
from reflexio_store.types import as_vector
from reflexio_store.validation import (
    check_batch,
    check_json,
    optional_text,
    parse_enum,
    require_ids,
    require_text,
)

Consistency = Literal["eventual", "strong"]
M = TypeVar("M", bound=Base)
StatusFilter = Status | str | Sequence[Status | str] | None

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by requests.py and by search code)
# --------------------------------------------------------------------------------------------


def json_list_contains(column: Any, value: Any, dialect_name: str) -> ColumnElement[bool]:
    """SQL for "the JSON list in `column` contains `value`", meaning the same on both databases.

    PostgreSQL: JSONB containment ``column @> '[value]'`` (served by a GIN index when present).
    SQLite: ``EXISTS (SELECT 1 FROM json_each(column) WHERE value = :value)``.
    Use ``session.get_bind().dialect.name`` for `dialect_name`. `value` should be a scalar
    (text or number); a row whose column is not a JSON list never matches.
    """
    if dialect_name == "postgresql":
        return type_coerce(column, JSONB).contains([value])
    elements = func.json_each(column).table_valued("value", joins_implicitly=True)
    return exists().where(elements.c.value == value)


def dialect_name(session: Session) -> str:
    """The dialect name of the session's bind ("sqlite" or "postgresql")."""
    return session.get_bind().dialect.name


def batch_timestamps(count: int, now: datetime | None = None) -> list[datetime]:
    """One UTC "now" per batch, plus one microsecond per row: rows of a batch keep their order
    when listed newest first, even on a clock that returns the same instant twice."""
    base = now if now is not None else datetime.now(UTC)
    step = timedelta(microseconds=1)
    return [base + step * i for i in range(count)]


def check_limit(limit: int, offset: int) -> None:
    """Refuse pagination values a database would reject or that would fetch unbounded rows."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer between 1 and {MAX_LIMIT}, got {limit!r}.")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValidationError(f"offset must be a non-negative integer, got {offset!r}.")


ID_CHUNK = 5_000
"""Ids per IN (...) list: below SQLite's and PostgreSQL's bound-parameter limits."""


def text_ids(ids: Iterable[Any], what: str) -> list[str]:
    """Validated, de-duplicated text ids (order kept); ValidationError on an empty list."""
    values = list(dict.fromkeys(require_ids(ids, what)))
    for value in values:
        if not isinstance(value, str):
            raise ValidationError(f"{what} must be text, got {type(value).__name__} {value!r}.")
    return values


def int_ids(ids: Iterable[Any], what: str) -> list[int]:
    """Validated, de-duplicated integer ids (order kept); ValidationError on an empty list."""
    values = list(dict.fromkeys(require_ids(ids, what)))
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(f"{what} must be integers, got {type(value).__name__} {value!r}.")
    return values


def chunks(values: Sequence[Any], size: int = ID_CHUNK) -> Iterable[Sequence[Any]]:
    """Consecutive slices of `values`, so that huge id lists stay under parameter limits."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# Field converters: (value, field name, embedding dimensions) -> the value to store.
Converter = Callable[[Any, str, int], Any]


def _req_text(value: Any, field: str, _dims: int) -> str:
    return require_text(value, field)


def _opt_text(value: Any, field: str, _dims: int) -> str | None:
    return optional_text(value, field)


def _opt_id(value: Any, field: str, _dims: int) -> str | None:
    """An optional caller-supplied id: None means "generate one"; otherwise non-empty text."""
    return None if value is None else require_text(value, field)


def _datetime(value: Any, field: str, _dims: int) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(f"{field} must be a datetime, got {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{field} is a naive datetime; pass a timezone-aware one, e.g. "
            "datetime.now(timezone.utc)."
        )
    return value


def _embedding(value: Any, field: str, dims: int) -> Any:
    if value is None:
        return None
    try:
        return as_vector(value, dims)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc}") from None


def _json_value(value: Any, field: str) -> None:
    check_json(value, field)


def _json_obj(value: Any, field: str, _dims: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{field} must be a JSON object (a dict), got {type(value).__name__}."
        )
    result = dict(value)
    _json_value(result, field)
    return result


def _json_list(value: Any, field: str, _dims: int) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(f"{field} must be a list, got {type(value).__name__}.")
    result = list(value)
    _json_value(result, field)
    return result


def _text_list(value: Any, field: str, _dims: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(f"{field} must be a list of text, got {type(value).__name__}.")
    result = list(value)
    for item in result:
        if not isinstance(item, str):
            raise ValidationError(f"{field} must contain only text, got {type(item).__name__}.")
    return result


def _status(value: Any, field: str, _dims: int) -> Status:
    return parse_enum(Status, value, field)


def _review_status(value: Any, field: str, _dims: int) -> PlaybookReviewStatus:
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


# --------------------------------------------------------------------------------------------
# The three memory kinds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind(Generic[M]):
    model: type[M]
    what: str
    key: str  # the public id attribute
    fields: Mapping[str, Converter]  # insertable fields (besides the generated key)
    required: tuple[str, ...]
    defaults: Mapping[str, Callable[[], Any]]
    updatable: frozenset[str]
    text_key: bool = False

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
        name = "id" if self.model is Profile else self.key
        return getattr(self.model, name)  # type: ignore[no-any-return]

    def column(self, name: str) -> InstrumentedAttribute[Any]:
        return getattr(self.model, name)  # type: ignore[no-any-return]


_PROFILE_FIELDS: dict[str, Converter] = {
    "profile_id": _opt_id,
    "user_id": _req_text,
    "content": _req_text,
    "custom_features": _json_obj,
    "extractor_names": _text_list,
    "source": _opt_text,
    "status": _status,
    "generated_from_request_id": _opt_text,
    "profile_time_to_live": _opt_text,
    "expires_at": _datetime,
    "last_modified_at": _datetime,
    "expanded_terms": _opt_text,
    "tags": _text_list,
    "embedding": _embedding,
    "created_at": _datetime,
}

_USER_PLAYBOOK_FIELDS: dict[str, Converter] = {
    "user_id": _opt_text,
    "playbook_name": _req_text,
    "request_id": _opt_text,
    "agent_version": _opt_text,
    "content": _req_text,
    "trigger": _opt_text,
    "rationale": _opt_text,
    "blocking_issue": _json_obj,
    "source_interaction_ids": _json_list,
    "status": _status,
    "source": _opt_text,
    "expanded_terms": _opt_text,
    "embedding": _embedding,
    "created_at": _datetime,
}

_AGENT_PLAYBOOK_FIELDS: dict[str, Converter] = {
    "playbook_name": _req_text,
    "agent_version": _opt_text,
    "content": _req_text,
    "trigger": _opt_text,
    "rationale": _opt_text,
    "blocking_issue": _json_obj,
    "playbook_status": _review_status,
    "playbook_metadata": _json_obj,
    "status": _status,
    "source": _opt_text,
    "expanded_terms": _opt_text,
    "embedding": _embedding,
    "created_at": _datetime,
}


def _none() -> None:
    return None


def _empty_list() -> list[Any]:
    return []


def _defaults(fields: Mapping[str, Converter], **special: Callable[[], Any]) -> dict[str, Any]:
    out: dict[str, Callable[[], Any]] = {}
    for name, conv in fields.items():
        out[name] = _empty_list if conv in (_json_list, _text_list) else _none
    out.update(special)
    return out


PROFILES: _Kind[Profile] = _Kind(
    model=Profile,
    what="profile",
    key="profile_id",
    fields=_PROFILE_FIELDS,
    required=("user_id", "content"),
    defaults=_defaults(
        _PROFILE_FIELDS, status=lambda: Status.PENDING, profile_id=lambda: uuid.uuid4().hex
    ),
    updatable=frozenset(_PROFILE_FIELDS) - {"profile_id", "created_at"},
    text_key=True,
)
USER_PLAYBOOKS: _Kind[UserPlaybook] = _Kind(
    model=UserPlaybook,
    what="user playbook",
    key="user_playbook_id",
    fields=_USER_PLAYBOOK_FIELDS,
    required=("playbook_name", "content"),
    defaults=_defaults(_USER_PLAYBOOK_FIELDS, status=lambda: Status.PENDING),
    updatable=frozenset(_USER_PLAYBOOK_FIELDS) - {"created_at"},
)
AGENT_PLAYBOOKS: _Kind[AgentPlaybook] = _Kind(
    model=AgentPlaybook,
    what="agent playbook",
    key="agent_playbook_id",
    fields=_AGENT_PLAYBOOK_FIELDS,
    required=("playbook_name", "content"),
    defaults=_defaults(
        _AGENT_PLAYBOOK_FIELDS,
        status=lambda: Status.PENDING,
        playbook_status=lambda: PlaybookReviewStatus.PENDING,
    ),
    updatable=frozenset(_AGENT_PLAYBOOK_FIELDS) - {"created_at"},
)


# --------------------------------------------------------------------------------------------
# Generic implementations
# --------------------------------------------------------------------------------------------


def _prepare_rows(
    session: Session, kind: _Kind[Any], items: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
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
        if kind is PROFILES and row["profile_id"] is None:
            row["profile_id"] = uuid.uuid4().hex
        rows.append(row)
    return rows


def _add(session: Session, kind: _Kind[Any], items: Sequence[Mapping[str, Any]]) -> list[Any]:
    rows = _prepare_rows(session, kind, items)
    if not rows:
        return []
    if kind is PROFILES:
        ids = [row["profile_id"] for row in rows]
        if len(set(ids)) != len(ids):
            raise ValidationError("Duplicate profile_id values in one batch; make them unique.")
        try:
            session.execute(insert(Profile), rows)
        except IntegrityError:
            raise ConflictError(
                "A profile_id in this batch already exists; use update_profile to change it, or "
                "omit profile_id to get a generated one."
            ) from None
        return ids
    statement = insert(kind.model).returning(kind.key_column, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows).all())


def _status_values(status: StatusFilter) -> list[Status] | None:
    if status is None:
        return None
    if isinstance(status, (str, Status)):
        return [parse_enum(Status, status)]
    values = [parse_enum(Status, s) for s in status]
    if not values:
        raise ValidationError("status filter is an empty list; pass None for any status.")
    return values


def _where_in(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = column.in_(values) if len(values) != 1 else column == values[0]
    return condition


def _get_by_ids(session: Session, kind: _Kind[M], ids: Sequence[Any]) -> list[M]:
    values = kind.ids(ids)
    by_id: dict[Any, M] = {}
    for part in chunks(values):
        for row in session.scalars(select(kind.model).where(kind.key_column.in_(part))):
            by_id[getattr(row, kind.key)] = row
    return [by_id[i] for i in values if i in by_id]


def _delete_by_ids(session: Session, kind: _Kind[Any], ids: Sequence[Any]) -> int:
    values = kind.ids(ids)
    return sum(_delete(session, kind, [kind.key_column.in_(part)]) for part in chunks(values))


def _common_filters(
    kind: _Kind[Any],
    *,
    status: StatusFilter,
    source: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> list[ColumnElement[bool]]:
    model: Any = kind.model
    where: list[ColumnElement[bool]] = []
    statuses = _status_values(status)
    if statuses is not None:
        where.append(_where_in(model.status, statuses))
    if source is not None:
        where.append(model.source == source)
    if created_from is not None:
        where.append(model.created_at >= _datetime(created_from, "created_from", 0))
    if created_to is not None:
        where.append(model.created_at < _datetime(created_to, "created_to", 0))
    return where


def _page(
    session: Session, kind: _Kind[M], where: Sequence[ColumnElement[bool]], limit: int, offset: int
) -> list[M]:
    check_limit(limit, offset)
    statement = (
        select(kind.model)
        .where(*where)
        .order_by(kind.column("created_at").desc(), kind.order_key.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(statement).all())


def _count(session: Session, kind: _Kind[Any], where: Sequence[ColumnElement[bool]]) -> int:
    return int(
        session.execute(select(func.count()).select_from(kind.model).where(*where)).scalar_one()
    )


def _update(session: Session, kind: _Kind[M], key: Any, changes: Mapping[str, Any]) -> M:
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
    if kind is PROFILES and "last_modified_at" not in values:
        values["last_modified_at"] = datetime.now(UTC)
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


def _delete(session: Session, kind: _Kind[Any], where: Sequence[ColumnElement[bool]]) -> int:
    result = session.execute(
        delete(kind.model).where(*where).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _set_status(
    session: Session,
    kind: _Kind[Any],
    where: Sequence[ColumnElement[bool]],
    new_status: Status,
) -> int:
    result = session.execute(
        update(kind.model)
        .where(*where)
        .values(status=new_status)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Promotion:
    """What `promote_pending_*` did: rows archived (were current) and promoted (were pending)."""

    archived: int
    promoted: int


def _archive_current(session: Session, kind: _Kind[Any], scope: list[ColumnElement[bool]]) -> int:
    """Step 1 of a promotion: the scope's current rows become archived."""
    model: Any = kind.model
    return _set_status(session, kind, [*scope, model.status == Status.CURRENT], Status.ARCHIVED)


def _activate_pending(session: Session, kind: _Kind[Any], scope: list[ColumnElement[bool]]) -> int:
    """Step 2 of a promotion: the scope's pending rows become current."""
    model: Any = kind.model
    return _set_status(session, kind, [*scope, model.status == Status.PENDING], Status.CURRENT)


def _schema_name(session: Session) -> str:
    """The schema the session's tables live in (the engine's schema_translate_map), else
    "public"."""
    options = session.connection().get_execution_options()
    schema = (options.get("schema_translate_map") or {}).get(None)
    return str(schema or "public")


def _lock_scope(session: Session, kind: _Kind[Any], scope_key: Sequence[str | None]) -> None:
    """PostgreSQL: serialise promotions of one scope with a transaction-scoped advisory lock
    (released at commit/rollback). SQLite write transactions are already serialised."""
    if dialect_name(session) != "postgresql":
        return
    # Advisory locks are database-wide, but each organization has its own schema: without the
    # schema in the key, the same user id in two organizations would needlessly serialise.
    key = json.dumps(
        ["reflexio_store.promote", _schema_name(session), kind.model.__tablename__, *scope_key]
    )
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def _promote(
    session: Session,
    kind: _Kind[Any],
    scope: list[ColumnElement[bool]],
    scope_key: Sequence[str | None],
) -> Promotion:
    _lock_scope(session, kind, scope_key)
    model: Any = kind.model
    has_pending = session.execute(
        select(exists().where(*scope, model.status == Status.PENDING))
    ).scalar_one()
    if not has_pending:
        # Nothing generated: keep the current rows (archiving them would leave the scope empty).
        return Promotion(archived=0, promoted=0)
    archived = _archive_current(session, kind, scope)
    promoted = _activate_pending(session, kind, scope)
    return Promotion(archived=archived, promoted=promoted)


def _nullable_eq(column: Any, value: str | None) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = column.is_(None) if value is None else column == value
    return condition


def _archive_by_ids(session: Session, kind: _Kind[Any], ids: Sequence[Any]) -> int:
    model: Any = kind.model
    return sum(
        _set_status(
            session,
            kind,
            [kind.key_column.in_(part), model.status != Status.ARCHIVED],
            Status.ARCHIVED,
        )
        for part in chunks(kind.ids(ids))
    )


def _restore_by_ids(session: Session, kind: _Kind[Any], ids: Sequence[Any]) -> int:
    model: Any = kind.model
    return sum(
        _set_status(
            session,
            kind,
            [kind.key_column.in_(part), model.status == Status.ARCHIVED],
            Status.CURRENT,
        )
        for part in chunks(kind.ids(ids))
    )


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def add_profiles(session: Session, profiles: Sequence[Mapping[str, Any]]) -> list[str]:
    """Insert profiles in one statement batch; return their profile_ids in input order.

    Each mapping needs user_id and content; profile_id defaults to a uuid4 hex, status to
    pending, created_at to the batch's time (in input order). Embeddings must have the store's
    dimensions. A duplicate profile_id raises ConflictError and nothing is written.
    """
    return _add(session, PROFILES, profiles)


def get_profile(
    session: Session, profile_id: str, *, consistency: Consistency = "eventual"
) -> Profile | None:
    """The profile with this profile_id, or None."""
    rows = _get_by_ids(session, PROFILES, [profile_id])
    return rows[0] if rows else None


def get_profiles_by_ids(
    session: Session, profile_ids: Sequence[str], *, consistency: Consistency = "eventual"
) -> list[Profile]:
    """The profiles with these ids, in the order asked (missing ids are skipped)."""
    return _get_by_ids(session, PROFILES, profile_ids)


def _profile_filters(
    session: Session,
    *,
    user_id: str | None,
    status: StatusFilter,
    source: str | None,
    extractor_name: str | None,
    tags: Sequence[str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
    not_expired: bool,
    now: datetime | None,
) -> list[ColumnElement[bool]]:
    where = _common_filters(
        PROFILES, status=status, source=source, created_from=created_from, created_to=created_to
    )
    dialect = dialect_name(session)
    if user_id is not None:
        where.append(Profile.user_id == user_id)
    if extractor_name is not None:
        require_text(extractor_name, "extractor_name")
        where.append(json_list_contains(Profile.extractor_names, extractor_name, dialect))
    if tags is not None:
        for tag in _text_list(tags, "tags", 0):
            where.append(json_list_contains(Profile.tags, tag, dialect))
    if not_expired:
        moment = _datetime(now, "now", 0) or datetime.now(UTC)
        where.append(or_(Profile.expires_at.is_(None), Profile.expires_at > moment))
    return where


def list_profiles(
    session: Session,
    *,
    user_id: str | None = None,
    status: StatusFilter = None,
    source: str | None = None,
    extractor_name: str | None = None,
    tags: Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    not_expired: bool = False,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[Profile]:
    """Profiles matching every given filter, newest first (created_at, then key, descending).

    status: one status or a list. extractor_name: the profile's extractor_names contains it.
    tags: the profile's tags contain every one. created_from/created_to: the half-open range
    [from, to). not_expired: expires_at is NULL or later than `now` (default: the current time).
    """
    where = _profile_filters(
        session,
        user_id=user_id,
        status=status,
        source=source,
        extractor_name=extractor_name,
        tags=tags,
        created_from=created_from,
        created_to=created_to,
        not_expired=not_expired,
        now=now,
    )
    return _page(session, PROFILES, where, limit, offset)


def count_profiles(
    session: Session,
    *,
    user_id: str | None = None,
    status: StatusFilter = None,
    source: str | None = None,
    extractor_name: str | None = None,
    tags: Sequence[str] | None = None,
) -> int:
    """How many profiles match the filters (on the primary: sees every committed write)."""
    where = _profile_filters(
        session,
        user_id=user_id,
        status=status,
        source=source,
        extractor_name=extractor_name,
        tags=tags,
        created_from=None,
        created_to=None,
        not_expired=False,
        now=None,
    )
    return _count(session, PROFILES, where)


def update_profile(session: Session, profile_id: str, changes: Mapping[str, Any]) -> Profile:
    """Change fields of one profile (embedding re-validated; last_modified_at set to now unless
    given) and return it. Unknown profile_id raises NotFoundError."""
    return _update(session, PROFILES, profile_id, changes)


def delete_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Delete profiles by profile_id; return how many were deleted."""
    return _delete_by_ids(session, PROFILES, profile_ids)


def delete_profiles_by_user(session: Session, user_id: str) -> int:
    """Delete every profile of a user; return how many."""
    return _delete(session, PROFILES, [Profile.user_id == require_text(user_id, "user_id")])


def delete_profiles_by_status(
    session: Session, status: Status | str, *, user_id: str | None = None
) -> int:
    """Delete profiles in `status` (optionally of one user); return how many."""
    where = [Profile.status == parse_enum(Status, status)]
    if user_id is not None:
        where.append(Profile.user_id == user_id)
    return _delete(session, PROFILES, where)


def promote_pending_profiles(session: Session, user_id: str) -> Promotion:
    """Atomically, for one user: current profiles → archived, pending profiles → current.

    Does nothing when the user has no pending profiles. Both updates run in the caller's one
    transaction, so a failure leaves the previous current profiles current.
    """
    user = require_text(user_id, "user_id")
    return _promote(session, PROFILES, [Profile.user_id == user], [user])


def archive_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Set these profiles to archived; return how many changed."""
    return _archive_by_ids(session, PROFILES, profile_ids)


def restore_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Set these archived profiles back to current; return how many changed."""
    return _restore_by_ids(session, PROFILES, profile_ids)


# --------------------------------------------------------------------------------------------
# User playbooks
# --------------------------------------------------------------------------------------------


def add_user_playbooks(session: Session, playbooks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert user playbooks in one batch; return their generated ids in input order.

    Each mapping needs playbook_name and content; status defaults to pending.
    """
    return _add(session, USER_PLAYBOOKS, playbooks)


def get_user_playbook(
    session: Session, user_playbook_id: int, *, consistency: Consistency = "eventual"
) -> UserPlaybook | None:
    """The user playbook with this id, or None."""
    rows = _get_by_ids(session, USER_PLAYBOOKS, [user_playbook_id])
    return rows[0] if rows else None


def get_user_playbooks_by_ids(
    session: Session, user_playbook_ids: Sequence[int], *, consistency: Consistency = "eventual"
) -> list[UserPlaybook]:
    """The user playbooks with these ids, in the order asked (missing ids are skipped)."""
    return _get_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def _user_playbook_filters(
    *,
    user_id: str | None,
    playbook_name: str | None,
    agent_version: str | None,
    status: StatusFilter,
    source: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> list[ColumnElement[bool]]:
    where = _common_filters(
        USER_PLAYBOOKS,
        status=status,
        source=source,
        created_from=created_from,
        created_to=created_to,
    )
    if user_id is not None:
        where.append(UserPlaybook.user_id == user_id)
    if playbook_name is not None:
        where.append(UserPlaybook.playbook_name == playbook_name)
    if agent_version is not None:
        where.append(UserPlaybook.agent_version == agent_version)
    return where


def list_user_playbooks(
    session: Session,
    *,
    user_id: str | None = None,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    status: StatusFilter = None,
    source: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[UserPlaybook]:
    """User playbooks matching every given filter, newest first; created range is [from, to)."""
    where = _user_playbook_filters(
        user_id=user_id,
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
        source=source,
        created_from=created_from,
        created_to=created_to,
    )
    return _page(session, USER_PLAYBOOKS, where, limit, offset)


def count_user_playbooks(
    session: Session,
    *,
    user_id: str | None = None,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    status: StatusFilter = None,
) -> int:
    """How many user playbooks match the filters (on the primary)."""
    where = _user_playbook_filters(
        user_id=user_id,
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
        source=None,
        created_from=None,
        created_to=None,
    )
    return _count(session, USER_PLAYBOOKS, where)


def update_user_playbook(
    session: Session, user_playbook_id: int, changes: Mapping[str, Any]
) -> UserPlaybook:
    """Change fields of one user playbook and return it; NotFoundError if absent."""
    return _update(session, USER_PLAYBOOKS, user_playbook_id, changes)


def delete_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Delete user playbooks by id (their agent playbook source links go too); return how many."""
    return _delete_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def delete_user_playbooks_by_user(session: Session, user_id: str) -> int:
    """Delete every user playbook of a user; return how many."""
    where = [UserPlaybook.user_id == require_text(user_id, "user_id")]
    return _delete(session, USER_PLAYBOOKS, where)


def delete_user_playbooks_by_status(
    session: Session, status: Status | str, *, user_id: str | None = None
) -> int:
    """Delete user playbooks in `status` (optionally of one user); return how many."""
    where = [UserPlaybook.status == parse_enum(Status, status)]
    if user_id is not None:
        where.append(UserPlaybook.user_id == user_id)
    return _delete(session, USER_PLAYBOOKS, where)


def delete_user_playbooks_by_playbook_name(session: Session, playbook_name: str) -> int:
    """Delete every user playbook with this playbook_name; return how many."""
    where = [UserPlaybook.playbook_name == require_text(playbook_name, "playbook_name")]
    return _delete(session, USER_PLAYBOOKS, where)


def promote_pending_user_playbooks(
    session: Session, user_id: str | None, playbook_name: str
) -> Promotion:
    """Atomically, for (user_id, playbook_name): current → archived, pending → current.

    user_id None means the playbooks without a user. No pending rows: nothing changes.
    """
    user = optional_text(user_id, "user_id")
    name = require_text(playbook_name, "playbook_name")
    scope = [_nullable_eq(UserPlaybook.user_id, user), UserPlaybook.playbook_name == name]
    return _promote(session, USER_PLAYBOOKS, scope, [user, name])


def archive_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Set these user playbooks to archived; return how many changed."""
    return _archive_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def restore_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Set these archived user playbooks back to current; return how many changed."""
    return _restore_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


# --------------------------------------------------------------------------------------------
# Agent playbooks
# --------------------------------------------------------------------------------------------


def add_agent_playbooks(session: Session, playbooks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert agent playbooks in one batch; return their generated ids in input order.

    Each mapping needs playbook_name and content; status defaults to pending and
    playbook_status (review) to pending.
    """
    return _add(session, AGENT_PLAYBOOKS, playbooks)


def get_agent_playbook(
    session: Session, agent_playbook_id: int, *, consistency: Consistency = "eventual"
) -> AgentPlaybook | None:
    """The agent playbook with this id, or None."""
    rows = _get_by_ids(session, AGENT_PLAYBOOKS, [agent_playbook_id])
    return rows[0] if rows else None


def get_agent_playbooks_by_ids(
    session: Session, agent_playbook_ids: Sequence[int], *, consistency: Consistency = "eventual"
) -> list[AgentPlaybook]:
    """The agent playbooks with these ids, in the order asked (missing ids are skipped)."""
    return _get_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def _agent_playbook_filters(
    *,
    playbook_name: str | None,
    agent_version: str | None,
    status: StatusFilter,
    playbook_status: PlaybookReviewStatus | str | None,
    source: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> list[ColumnElement[bool]]:
    where = _common_filters(
        AGENT_PLAYBOOKS,
        status=status,
        source=source,
        created_from=created_from,
        created_to=created_to,
    )
    if playbook_name is not None:
        where.append(AgentPlaybook.playbook_name == playbook_name)
    if agent_version is not None:
        where.append(AgentPlaybook.agent_version == agent_version)
    if playbook_status is not None:
        review = parse_enum(PlaybookReviewStatus, playbook_status, "playbook_status")
        where.append(AgentPlaybook.playbook_status == review)
    return where


def list_agent_playbooks(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    status: StatusFilter = None,
    playbook_status: PlaybookReviewStatus | str | None = None,
    source: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[AgentPlaybook]:
    """Agent playbooks matching every given filter, newest first; created range is [from, to)."""
    where = _agent_playbook_filters(
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
        playbook_status=playbook_status,
        source=source,
        created_from=created_from,
        created_to=created_to,
    )
    return _page(session, AGENT_PLAYBOOKS, where, limit, offset)


def count_agent_playbooks(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    status: StatusFilter = None,
    playbook_status: PlaybookReviewStatus | str | None = None,
) -> int:
    """How many agent playbooks match the filters (on the primary)."""
    where = _agent_playbook_filters(
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
        playbook_status=playbook_status,
        source=None,
        created_from=None,
        created_to=None,
    )
    return _count(session, AGENT_PLAYBOOKS, where)


def update_agent_playbook(
    session: Session, agent_playbook_id: int, changes: Mapping[str, Any]
) -> AgentPlaybook:
    """Change fields of one agent playbook and return it; NotFoundError if absent."""
    return _update(session, AGENT_PLAYBOOKS, agent_playbook_id, changes)


def delete_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Delete agent playbooks by id (their source links go too); return how many."""
    return _delete_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def delete_agent_playbooks_by_status(session: Session, status: Status | str) -> int:
    """Delete agent playbooks in `status`; return how many."""
    return _delete(session, AGENT_PLAYBOOKS, [AgentPlaybook.status == parse_enum(Status, status)])


def delete_agent_playbooks_by_playbook_name(
    session: Session, playbook_name: str, *, agent_version: str | None = None
) -> int:
    """Delete agent playbooks with this playbook_name (optionally one agent_version)."""
    where = [AgentPlaybook.playbook_name == require_text(playbook_name, "playbook_name")]
    if agent_version is not None:
        where.append(AgentPlaybook.agent_version == agent_version)
    return _delete(session, AGENT_PLAYBOOKS, where)


def promote_pending_agent_playbooks(
    session: Session, playbook_name: str, agent_version: str | None
) -> Promotion:
    """Atomically, for (playbook_name, agent_version): current → archived, pending → current.

    agent_version None means the playbooks without a version. No pending rows: nothing changes.
    """
    name = require_text(playbook_name, "playbook_name")
    version = optional_text(agent_version, "agent_version")
    scope = [
        AgentPlaybook.playbook_name == name,
        _nullable_eq(AgentPlaybook.agent_version, version),
    ]
    return _promote(session, AGENT_PLAYBOOKS, scope, [name, version])


def archive_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Set these agent playbooks to archived; return how many changed."""
    return _archive_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def restore_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Set these archived agent playbooks back to current; return how many changed."""
    return _restore_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def set_agent_playbook_review_status(
    session: Session,
    agent_playbook_ids: Sequence[int],
    playbook_status: PlaybookReviewStatus | str,
) -> int:
    """Set the review status (pending / approved / rejected) of agent playbooks.

    An unknown value raises ValidationError; an id that does not exist raises NotFoundError and
    nothing changes. Returns how many rows were updated.
    """
    review = parse_enum(PlaybookReviewStatus, playbook_status, "playbook_status")
    ids = AGENT_PLAYBOOKS.ids(agent_playbook_ids)
    if len(ids) > ID_CHUNK:
        raise ValidationError(f"At most {ID_CHUNK} agent playbook ids per call; send batches.")
    result = session.execute(
        update(AgentPlaybook)
        .where(AgentPlaybook.agent_playbook_id.in_(ids))
        .values(playbook_status=review)
        .execution_options(synchronize_session=False)
    )
    changed = int(result.rowcount)  # type: ignore[attr-defined]
    if changed != len(ids):
        found = set(
            session.scalars(
                select(AgentPlaybook.agent_playbook_id).where(
                    AgentPlaybook.agent_playbook_id.in_(ids)
                )
            )
        )
        missing = [i for i in ids if i not in found]
        raise NotFoundError(f"No agent playbook with id(s) {missing}; nothing was changed.")
    return changed


def add_agent_playbook_sources(
    session: Session, agent_playbook_id: int, user_playbook_ids: Sequence[int]
) -> int:
    """Record that an agent playbook was aggregated from these user playbooks.

    Links that already exist are kept; returns how many new links were added. An agent or user
    playbook that does not exist raises NotFoundError and nothing is written.
    """
    wanted = USER_PLAYBOOKS.ids(user_playbook_ids)
    (agent_playbook_id,) = AGENT_PLAYBOOKS.ids([agent_playbook_id])
    if len(wanted) > ID_CHUNK:
        raise ValidationError(f"At most {ID_CHUNK} user playbook ids per call; send batches.")
    if session.get(AgentPlaybook, agent_playbook_id) is None:
        raise NotFoundError(f"No agent playbook with id {agent_playbook_id!r}.")
    found = set(
        session.scalars(
            select(UserPlaybook.user_playbook_id).where(UserPlaybook.user_playbook_id.in_(wanted))
        )
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"No user playbook with id(s) {missing}; no links were added.")
    # One INSERT ... ON CONFLICT DO NOTHING RETURNING: links that already exist (including ones
    # a concurrent call is inserting right now) are skipped by the database instead of raising
    # IntegrityError, and the returned rows are exactly the links this call added. Rows go in
    # id order so concurrent calls wait on each other's rows in the same order (no deadlock).
    dialect_insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    stmt = (
        dialect_insert(AgentPlaybookSource)
        .values(
            [
                {"agent_playbook_id": agent_playbook_id, "user_playbook_id": i}
                for i in sorted(wanted)
            ]
        )
        .on_conflict_do_nothing(index_elements=["agent_playbook_id", "user_playbook_id"])
        .returning(AgentPlaybookSource.user_playbook_id)
    )
    return len(session.execute(stmt).all())


def get_agent_playbook_sources(
    session: Session, agent_playbook_id: int, *, consistency: Consistency = "eventual"
) -> list[UserPlaybook]:
    """The user playbooks an agent playbook was aggregated from, oldest first."""
    statement = (
        select(UserPlaybook)
        .join(
            AgentPlaybookSource,
            and_(
                AgentPlaybookSource.user_playbook_id == UserPlaybook.user_playbook_id,
                AgentPlaybookSource.agent_playbook_id == agent_playbook_id,
            ),
        )
        .order_by(UserPlaybook.created_at, UserPlaybook.user_playbook_id)
    )
    return list(session.scalars(statement).all())


def remove_agent_playbook_sources(
    session: Session, agent_playbook_id: int, user_playbook_ids: Sequence[int] | None = None
) -> int:
    """Remove source links of an agent playbook (all of them when ids is None); return how many."""
    where: list[ColumnElement[bool]] = [AgentPlaybookSource.agent_playbook_id == agent_playbook_id]
    if user_playbook_ids is not None:
        where.append(
            AgentPlaybookSource.user_playbook_id.in_(USER_PLAYBOOKS.ids(user_playbook_ids))
        )
    result = session.execute(delete(AgentPlaybookSource).where(*where))
    return int(result.rowcount)  # type: ignore[attr-defined]


class MemoryOperations:
    """Profiles, user playbooks and agent playbooks: add, get, list, update, delete, lifecycle."""

    add_profiles = write(add_profiles)
    get_profile = read(get_profile)
    get_profiles_by_ids = read(get_profiles_by_ids)
    list_profiles = read(list_profiles)
    count_profiles = fresh(count_profiles)
    update_profile = write(update_profile)
    delete_profiles = write(delete_profiles)
    delete_profiles_by_user = write(delete_profiles_by_user)
    delete_profiles_by_status = write(delete_profiles_by_status)
    promote_pending_profiles = write(promote_pending_profiles)
    archive_profiles = write(archive_profiles)
    restore_profiles = write(restore_profiles)

    add_user_playbooks = write(add_user_playbooks)
    get_user_playbook = read(get_user_playbook)
    get_user_playbooks_by_ids = read(get_user_playbooks_by_ids)
    list_user_playbooks = read(list_user_playbooks)
    count_user_playbooks = fresh(count_user_playbooks)
    update_user_playbook = write(update_user_playbook)
    delete_user_playbooks = write(delete_user_playbooks)
    delete_user_playbooks_by_user = write(delete_user_playbooks_by_user)
    delete_user_playbooks_by_status = write(delete_user_playbooks_by_status)
    delete_user_playbooks_by_playbook_name = write(delete_user_playbooks_by_playbook_name)
    promote_pending_user_playbooks = write(promote_pending_user_playbooks)
    archive_user_playbooks = write(archive_user_playbooks)
    restore_user_playbooks = write(restore_user_playbooks)

    add_agent_playbooks = write(add_agent_playbooks)
    get_agent_playbook = read(get_agent_playbook)
    get_agent_playbooks_by_ids = read(get_agent_playbooks_by_ids)
    list_agent_playbooks = read(list_agent_playbooks)
    count_agent_playbooks = fresh(count_agent_playbooks)
    update_agent_playbook = write(update_agent_playbook)
    delete_agent_playbooks = write(delete_agent_playbooks)
    delete_agent_playbooks_by_status = write(delete_agent_playbooks_by_status)
    delete_agent_playbooks_by_playbook_name = write(delete_agent_playbooks_by_playbook_name)
    promote_pending_agent_playbooks = write(promote_pending_agent_playbooks)
    archive_agent_playbooks = write(archive_agent_playbooks)
    restore_agent_playbooks = write(restore_agent_playbooks)
    set_agent_playbook_review_status = write(set_agent_playbook_review_status)
    add_agent_playbook_sources = write(add_agent_playbook_sources)
    get_agent_playbook_sources = read(get_agent_playbook_sources)
    remove_agent_playbook_sources = write(remove_agent_playbook_sources)
