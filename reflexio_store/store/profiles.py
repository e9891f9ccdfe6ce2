"""Profiles: what the system knows about a user, with their status lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from reflexio_store.enums import Status
from reflexio_store.models import Profile
from reflexio_store.search import filters as f
from reflexio_store.search.filters import StatusFilter
from reflexio_store.store import crud, lifecycle
from reflexio_store.store._operation import fresh, read, write
from reflexio_store.store.lifecycle import Promotion
from reflexio_store.store.paging import DEFAULT_LIMIT, newest_first
from reflexio_store.store.rows import (
    Converter,
    EntityKind,
    field_defaults,
    searched_text,
    to_datetime,
    to_embedding,
    to_json_object,
    to_key,
    to_optional_key,
    to_optional_text,
    to_status,
    to_text_list,
)
from reflexio_store.validation import filter_key, parse_enum, require_bool, require_key

_PROFILE_FIELDS: dict[str, Converter] = {
    "profile_id": to_optional_key,
    "user_id": to_key,
    "content": searched_text(2),
    "custom_features": to_json_object,
    "extractor_names": to_text_list,
    "source": to_optional_text,
    "status": to_status,
    "generated_from_request_id": to_optional_key,
    "profile_time_to_live": to_optional_text,
    "expires_at": to_datetime,
    "last_modified_at": to_datetime,
    "expanded_terms": searched_text(2, optional=True),
    "tags": to_text_list,
    "embedding": to_embedding,
    "created_at": to_datetime,
}

PROFILES: EntityKind[Profile] = EntityKind(
    model=Profile,
    what="profile",
    key="profile_id",
    fields=_PROFILE_FIELDS,
    required=("user_id", "content"),
    defaults=field_defaults(
        _PROFILE_FIELDS, status=lambda: Status.PENDING, profile_id=lambda: uuid.uuid4().hex
    ),
    updatable=frozenset(_PROFILE_FIELDS) - {"profile_id", "created_at"},
    text_key=True,
    order_by="id",
    modified_at="last_modified_at",
)


def add_profiles(session: Session, profiles: Sequence[Mapping[str, Any]]) -> list[str]:
    """Insert profiles in one statement batch; return their profile_ids in input order.

    Each mapping needs user_id and content; profile_id defaults to a uuid4 hex, status to
    pending, created_at to the batch's time (in input order). Embeddings must have the store's
    dimensions. A duplicate profile_id raises ConflictError and nothing is written.
    """
    return crud.add(session, PROFILES, profiles)


def get_profile(session: Session, profile_id: str) -> Profile | None:
    """The profile with this profile_id, or None."""
    return crud.get_one(session, PROFILES, profile_id)


def get_profiles_by_ids(session: Session, profile_ids: Sequence[str]) -> list[Profile]:
    """The profiles with these ids, in the order asked (missing ids are skipped)."""
    return crud.get_by_ids(session, PROFILES, profile_ids)


def _profile_filters(
    *,
    user_id: str | Sequence[str] | None,
    status: StatusFilter,
    source: str | Sequence[str] | None,
    extractor_name: str | Sequence[str] | None,
    tags: str | Sequence[str] | None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    not_expired: bool = False,
    now: datetime | None = None,
) -> list[ColumnElement[bool]]:
    return [
        *f.equals(Profile.user_id, user_id, "user_id"),
        *f.status_in(Profile.status, status),
        *f.equals(Profile.source, source, "source"),
        *f.contains_all(Profile.extractor_names, extractor_name, "extractor_name"),
        *f.contains_all(Profile.tags, tags, "tags"),
        *f.created_between(
            Profile.created_at, created_from, created_to, ("created_from", "created_to")
        ),
        *(
            f.not_expired(Profile.expires_at, now)
            if require_bool(not_expired, "not_expired")
            else []
        ),
    ]


def list_profiles(
    session: Session,
    *,
    user_id: str | Sequence[str] | None = None,
    status: StatusFilter = None,
    source: str | Sequence[str] | None = None,
    extractor_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    not_expired: bool = False,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[Profile]:
    """Profiles matching every given filter, newest first (created_at, then key, descending).

    status: one status or a list. extractor_name: the profile's extractor_names contains it.
    tags: the profile's tags contain every one. created_from/created_to: the half-open range
    [from, to). not_expired: expires_at is NULL or later than `now` (default: the current time).
    """
    where = _profile_filters(
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
    return newest_first(session, PROFILES, where, limit, offset)


def count_profiles(
    session: Session,
    *,
    user_id: str | Sequence[str] | None = None,
    status: StatusFilter = None,
    source: str | Sequence[str] | None = None,
    extractor_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
) -> int:
    """How many profiles match the filters (on the primary: sees every committed write)."""
    where = _profile_filters(
        user_id=user_id,
        status=status,
        source=source,
        extractor_name=extractor_name,
        tags=tags,
    )
    return crud.count(session, PROFILES, where)


def update_profile(session: Session, profile_id: str, changes: Mapping[str, Any]) -> Profile:
    """Change fields of one profile (embedding re-validated; last_modified_at set to now unless
    given) and return it. Unknown profile_id raises NotFoundError."""
    return crud.update_one(session, PROFILES, profile_id, changes)


def delete_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Delete profiles by profile_id; return how many were deleted."""
    return crud.delete_by_ids(session, PROFILES, profile_ids)


def delete_profiles_by_user(session: Session, user_id: str) -> int:
    """Delete every profile of a user; return how many."""
    return crud.delete_where(
        session, PROFILES, [Profile.user_id == require_key(user_id, "user_id")]
    )


def delete_profiles_by_status(
    session: Session, status: Status | str, *, user_id: str | None = None
) -> int:
    """Delete profiles in `status` (optionally of one user); return how many."""
    where = [Profile.status == parse_enum(Status, status)]
    if user_id is not None:
        where.append(Profile.user_id == filter_key(user_id, "user_id"))
    return crud.delete_where(session, PROFILES, where)


def promote_pending_profiles(session: Session, user_id: str) -> Promotion:
    """Atomically, for one user: current profiles → archived, pending profiles → current.

    Does nothing when the user has no pending profiles. Both updates run in the caller's one
    transaction, so a failure leaves the previous current profiles current.
    """
    user = require_key(user_id, "user_id")
    return lifecycle.promote(session, PROFILES, [Profile.user_id == user], [user])


def archive_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Set these profiles to archived; return how many changed."""
    return lifecycle.archive_by_ids(session, PROFILES, profile_ids)


def restore_profiles(session: Session, profile_ids: Sequence[str]) -> int:
    """Set these archived profiles back to current; return how many changed."""
    return lifecycle.restore_by_ids(session, PROFILES, profile_ids)


class ProfileOperations:
    """Profiles: add, get, list, count, update, delete, lifecycle."""

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
