"""User playbooks: behaviour rules learned for one user (or for no user), with their lifecycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from reflexio_store.enums import Status
from reflexio_store.models import UserPlaybook
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
    to_json_list,
    to_json_object,
    to_key,
    to_optional_key,
    to_optional_text,
    to_status,
)
from reflexio_store.validation import filter_key, optional_key, parse_enum, require_key

_USER_PLAYBOOK_FIELDS: dict[str, Converter] = {
    "user_id": to_optional_key,
    "playbook_name": to_key,
    "request_id": to_optional_key,
    "agent_version": to_optional_key,
    "content": searched_text(3),
    "trigger": searched_text(3, optional=True),
    "rationale": to_optional_text,
    "blocking_issue": to_json_object,
    "source_interaction_ids": to_json_list,
    "status": to_status,
    "source": to_optional_text,
    "expanded_terms": searched_text(3, optional=True),
    "embedding": to_embedding,
    "created_at": to_datetime,
}

USER_PLAYBOOKS: EntityKind[UserPlaybook] = EntityKind(
    model=UserPlaybook,
    what="user playbook",
    key="user_playbook_id",
    fields=_USER_PLAYBOOK_FIELDS,
    required=("playbook_name", "content"),
    defaults=field_defaults(_USER_PLAYBOOK_FIELDS, status=lambda: Status.PENDING),
    updatable=frozenset(_USER_PLAYBOOK_FIELDS) - {"created_at"},
)


def add_user_playbooks(session: Session, playbooks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert user playbooks in one batch; return their generated ids in input order.

    Each mapping needs playbook_name and content; status defaults to pending.
    """
    return crud.add(session, USER_PLAYBOOKS, playbooks)


def get_user_playbook(session: Session, user_playbook_id: int) -> UserPlaybook | None:
    """The user playbook with this id, or None."""
    return crud.get_one(session, USER_PLAYBOOKS, user_playbook_id)


def get_user_playbooks_by_ids(
    session: Session, user_playbook_ids: Sequence[int]
) -> list[UserPlaybook]:
    """The user playbooks with these ids, in the order asked (missing ids are skipped)."""
    return crud.get_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def _user_playbook_filters(
    *,
    user_id: str | Sequence[str] | None,
    playbook_name: str | Sequence[str] | None,
    agent_version: str | Sequence[str] | None,
    status: StatusFilter,
    source: str | Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> list[ColumnElement[bool]]:
    return [
        *f.equals(UserPlaybook.user_id, user_id, "user_id"),
        *f.equals(UserPlaybook.playbook_name, playbook_name, "playbook_name"),
        *f.equals(UserPlaybook.agent_version, agent_version, "agent_version"),
        *f.status_in(UserPlaybook.status, status),
        *f.equals(UserPlaybook.source, source, "source"),
        *f.created_between(
            UserPlaybook.created_at, created_from, created_to, ("created_from", "created_to")
        ),
    ]


def list_user_playbooks(
    session: Session,
    *,
    user_id: str | Sequence[str] | None = None,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    status: StatusFilter = None,
    source: str | Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
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
    return newest_first(session, USER_PLAYBOOKS, where, limit, offset)


def count_user_playbooks(
    session: Session,
    *,
    user_id: str | Sequence[str] | None = None,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    status: StatusFilter = None,
) -> int:
    """How many user playbooks match the filters (on the primary)."""
    where = _user_playbook_filters(
        user_id=user_id,
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
    )
    return crud.count(session, USER_PLAYBOOKS, where)


def update_user_playbook(
    session: Session, user_playbook_id: int, changes: Mapping[str, Any]
) -> UserPlaybook:
    """Change fields of one user playbook and return it; NotFoundError if absent."""
    return crud.update_one(session, USER_PLAYBOOKS, user_playbook_id, changes)


def delete_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Delete user playbooks by id (their agent playbook source links go too); return how many."""
    return crud.delete_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def delete_user_playbooks_by_user(session: Session, user_id: str) -> int:
    """Delete every user playbook of a user; return how many."""
    where = [UserPlaybook.user_id == require_key(user_id, "user_id")]
    return crud.delete_where(session, USER_PLAYBOOKS, where)


def delete_user_playbooks_by_status(
    session: Session, status: Status | str, *, user_id: str | None = None
) -> int:
    """Delete user playbooks in `status` (optionally of one user); return how many."""
    where = [UserPlaybook.status == parse_enum(Status, status)]
    if user_id is not None:
        where.append(UserPlaybook.user_id == filter_key(user_id, "user_id"))
    return crud.delete_where(session, USER_PLAYBOOKS, where)


def delete_user_playbooks_by_playbook_name(session: Session, playbook_name: str) -> int:
    """Delete every user playbook with this playbook_name; return how many."""
    where = [UserPlaybook.playbook_name == require_key(playbook_name, "playbook_name")]
    return crud.delete_where(session, USER_PLAYBOOKS, where)


def promote_pending_user_playbooks(
    session: Session, user_id: str | None, playbook_name: str
) -> Promotion:
    """Atomically, for (user_id, playbook_name): current → archived, pending → current.

    user_id None means the playbooks without a user. No pending rows: nothing changes.
    """
    user = optional_key(user_id, "user_id")
    name = require_key(playbook_name, "playbook_name")
    scope = [*f.equals_or_null(UserPlaybook.user_id, user), UserPlaybook.playbook_name == name]
    return lifecycle.promote(session, USER_PLAYBOOKS, scope, [user, name])


def archive_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Set these user playbooks to archived; return how many changed."""
    return lifecycle.archive_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


def restore_user_playbooks(session: Session, user_playbook_ids: Sequence[int]) -> int:
    """Set these archived user playbooks back to current; return how many changed."""
    return lifecycle.restore_by_ids(session, USER_PLAYBOOKS, user_playbook_ids)


class UserPlaybookOperations:
    """User playbooks: add, get, list, count, update, delete, lifecycle."""

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
