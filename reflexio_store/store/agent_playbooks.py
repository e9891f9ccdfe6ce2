"""Agent playbooks: behaviour rules for an agent version, with a review status and lifecycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import NotFoundError, ValidationError
from reflexio_store.models import AgentPlaybook
from reflexio_store.search import filters as f
from reflexio_store.search.filters import StatusFilter
from reflexio_store.store import crud, lifecycle
from reflexio_store.store._operation import fresh, read, write
from reflexio_store.store.lifecycle import Promotion
from reflexio_store.store.paging import DEFAULT_LIMIT, newest_first
from reflexio_store.store.rows import (
    ID_CHUNK,
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
    to_review_status,
    to_status,
)
from reflexio_store.validation import filter_key, optional_key, parse_enum, require_key

_AGENT_PLAYBOOK_FIELDS: dict[str, Converter] = {
    "playbook_name": to_key,
    "agent_version": to_optional_key,
    "content": searched_text(3),
    "trigger": searched_text(3, optional=True),
    "rationale": to_optional_text,
    "blocking_issue": to_json_object,
    "playbook_status": to_review_status,
    "playbook_metadata": to_json_object,
    "status": to_status,
    "source": to_optional_text,
    "expanded_terms": searched_text(3, optional=True),
    "embedding": to_embedding,
    "created_at": to_datetime,
}

AGENT_PLAYBOOKS: EntityKind[AgentPlaybook] = EntityKind(
    model=AgentPlaybook,
    what="agent playbook",
    key="agent_playbook_id",
    fields=_AGENT_PLAYBOOK_FIELDS,
    required=("playbook_name", "content"),
    defaults=field_defaults(
        _AGENT_PLAYBOOK_FIELDS,
        status=lambda: Status.PENDING,
        playbook_status=lambda: PlaybookReviewStatus.PENDING,
    ),
    updatable=frozenset(_AGENT_PLAYBOOK_FIELDS) - {"created_at"},
)


def add_agent_playbooks(session: Session, playbooks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert agent playbooks in one batch; return their generated ids in input order.

    Each mapping needs playbook_name and content; status defaults to pending and
    playbook_status (review) to pending.
    """
    return crud.add(session, AGENT_PLAYBOOKS, playbooks)


def get_agent_playbook(session: Session, agent_playbook_id: int) -> AgentPlaybook | None:
    """The agent playbook with this id, or None."""
    return crud.get_one(session, AGENT_PLAYBOOKS, agent_playbook_id)


def get_agent_playbooks_by_ids(
    session: Session, agent_playbook_ids: Sequence[int]
) -> list[AgentPlaybook]:
    """The agent playbooks with these ids, in the order asked (missing ids are skipped)."""
    return crud.get_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def _agent_playbook_filters(
    *,
    playbook_name: str | Sequence[str] | None,
    agent_version: str | Sequence[str] | None,
    status: StatusFilter,
    playbook_status: f.ReviewStatusFilter,
    source: str | Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> list[ColumnElement[bool]]:
    return [
        *f.equals(AgentPlaybook.playbook_name, playbook_name, "playbook_name"),
        *f.equals(AgentPlaybook.agent_version, agent_version, "agent_version"),
        *f.status_in(AgentPlaybook.status, status),
        *f.review_status_in(AgentPlaybook.playbook_status, playbook_status),
        *f.equals(AgentPlaybook.source, source, "source"),
        *f.created_between(
            AgentPlaybook.created_at, created_from, created_to, ("created_from", "created_to")
        ),
    ]


def list_agent_playbooks(
    session: Session,
    *,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    status: StatusFilter = None,
    playbook_status: f.ReviewStatusFilter = None,
    source: str | Sequence[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
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
    return newest_first(session, AGENT_PLAYBOOKS, where, limit, offset)


def count_agent_playbooks(
    session: Session,
    *,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    status: StatusFilter = None,
    playbook_status: f.ReviewStatusFilter = None,
) -> int:
    """How many agent playbooks match the filters (on the primary)."""
    where = _agent_playbook_filters(
        playbook_name=playbook_name,
        agent_version=agent_version,
        status=status,
        playbook_status=playbook_status,
    )
    return crud.count(session, AGENT_PLAYBOOKS, where)


def update_agent_playbook(
    session: Session, agent_playbook_id: int, changes: Mapping[str, Any]
) -> AgentPlaybook:
    """Change fields of one agent playbook and return it; NotFoundError if absent."""
    return crud.update_one(session, AGENT_PLAYBOOKS, agent_playbook_id, changes)


def delete_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Delete agent playbooks by id (their source links go too); return how many."""
    return crud.delete_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def delete_agent_playbooks_by_status(session: Session, status: Status | str) -> int:
    """Delete agent playbooks in `status`; return how many."""
    where = [AgentPlaybook.status == parse_enum(Status, status)]
    return crud.delete_where(session, AGENT_PLAYBOOKS, where)


def delete_agent_playbooks_by_playbook_name(
    session: Session, playbook_name: str, *, agent_version: str | None = None
) -> int:
    """Delete agent playbooks with this playbook_name (optionally one agent_version)."""
    where = [AgentPlaybook.playbook_name == require_key(playbook_name, "playbook_name")]
    if agent_version is not None:
        where.append(AgentPlaybook.agent_version == filter_key(agent_version, "agent_version"))
    return crud.delete_where(session, AGENT_PLAYBOOKS, where)


def promote_pending_agent_playbooks(
    session: Session, playbook_name: str, agent_version: str | None
) -> Promotion:
    """Atomically, for (playbook_name, agent_version): current → archived, pending → current.

    agent_version None means the playbooks without a version. No pending rows: nothing changes.
    """
    name = require_key(playbook_name, "playbook_name")
    version = optional_key(agent_version, "agent_version")
    scope = [
        AgentPlaybook.playbook_name == name,
        *f.equals_or_null(AgentPlaybook.agent_version, version),
    ]
    return lifecycle.promote(session, AGENT_PLAYBOOKS, scope, [name, version])


def archive_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Set these agent playbooks to archived; return how many changed."""
    return lifecycle.archive_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


def restore_agent_playbooks(session: Session, agent_playbook_ids: Sequence[int]) -> int:
    """Set these archived agent playbooks back to current; return how many changed."""
    return lifecycle.restore_by_ids(session, AGENT_PLAYBOOKS, agent_playbook_ids)


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
    changed = crud.rowcount(
        session.execute(
            update(AgentPlaybook)
            .where(AgentPlaybook.agent_playbook_id.in_(ids))
            .values(playbook_status=review)
            .execution_options(synchronize_session=False)
        )
    )
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


class AgentPlaybookOperations:
    """Agent playbooks: add, get, list, count, update, delete, lifecycle, review status."""

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
