"""Requests and their interactions.

A request and its interactions are written in one transaction (the Store's writer session), in
two insertmanyvalues batches: one for the requests, one for all their interactions. Deleting a
request deletes its interactions through the foreign key's ON DELETE CASCADE on both databases;
on SQLite the FTS5 delete trigger fires for cascaded rows too, so no full-text entry is left.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from reflexio_store.errors import ValidationError
from reflexio_store.models import (
    Interaction,
    Profile,
    ProfileChangeLog,
    Request,
    UserPlaybook,
)
from reflexio_store.store._operation import embedding_dimensions, fresh, read, write
from reflexio_store.store.crud import conflict
from reflexio_store.store.paging import DEFAULT_LIMIT
from reflexio_store.store.rows import (
    Converter,
    batch_timestamps,
    chunks,
    convert_row,
    searched_text,
    to_datetime,
    to_embedding,
    to_json_list,
    to_key,
    to_optional_key,
    to_optional_text,
)
from reflexio_store.validation import (
    as_list,
    check_batch,
    filter_key,
    page,
    require_bool,
    require_key,
    text_ids,
)

_REQUEST_FIELDS: dict[str, Converter] = {
    "request_id": to_optional_key,
    "user_id": to_key,
    "session_id": to_optional_key,
    "agent_version": to_optional_key,
    "source": to_optional_text,
    "created_at": to_datetime,
    "interactions": lambda value, field, dims: value,  # validated separately
}

_INTERACTION_FIELDS: dict[str, Converter] = {
    "user_id": to_key,
    "role": to_optional_key,
    "content": searched_text(1, empty=True),
    "user_action": to_optional_text,
    "user_action_description": to_optional_text,
    "interacted_image_url": to_optional_text,
    "shadow_content": to_optional_text,
    "expert_content": to_optional_text,
    "tools_used": to_json_list,
    "embedding": to_embedding,
    "created_at": to_datetime,
}
_INTERACTION_DEFAULTS: dict[str, Any] = {name: None for name in _INTERACTION_FIELDS}
_INTERACTION_DEFAULTS.update(content="", tools_used=[])


@dataclass
class SessionGroup:
    """One session of a user: its requests newest first (each with its interactions loaded)."""

    session_id: str | None
    last_request_at: datetime
    requests: list[Request] = field(default_factory=list)


def _prepare(
    session: Session, requests: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if isinstance(requests, Mapping) or not isinstance(requests, Sequence):
        raise ValidationError("Pass a list of request mappings, not a single one.")
    check_batch(requests, "requests")
    dims = embedding_dimensions(session)
    request_rows: list[dict[str, Any]] = []
    interaction_items: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(requests):
        given = convert_row(item, _REQUEST_FIELDS, dims, "request", index)
        if given.get("user_id") is None:
            raise ValidationError(f"request[{index}] needs user_id: pass it as text.")
        interactions = given.pop("interactions", None)
        if interactions is None:
            interactions = []
        elif isinstance(interactions, (str, bytes, bytearray, Mapping)) or not isinstance(
            interactions, Sequence
        ):
            raise ValidationError(
                f"request[{index}].interactions must be a list of mappings, got "
                f"{type(interactions).__name__}."
            )
        row = {
            "request_id": given.get("request_id") or uuid.uuid4().hex,
            "user_id": given["user_id"],
            "session_id": given.get("session_id"),
            "agent_version": given.get("agent_version"),
            "source": given.get("source"),
            "created_at": given.get("created_at"),
        }
        request_rows.append(row)
        interaction_items.extend((index, i) for i in interactions)
    check_batch(interaction_items, "interactions")
    ids = [row["request_id"] for row in request_rows]
    if len(set(ids)) != len(ids):
        raise ValidationError("Duplicate request_id values in one batch; make them unique.")

    request_stamps = batch_timestamps(len(request_rows))
    for row, stamp in zip(request_rows, request_stamps, strict=True):
        if row["created_at"] is None:
            row["created_at"] = stamp
    interaction_stamps = batch_timestamps(len(interaction_items))
    interaction_rows: list[dict[str, Any]] = []
    for position, (index, item) in enumerate(interaction_items):
        parent = request_rows[index]
        given = convert_row(item, _INTERACTION_FIELDS, dims, f"request[{index}].interaction")
        if given.get("user_id", parent["user_id"]) != parent["user_id"]:
            raise ValidationError(
                f"request[{index}]: an interaction's user_id ({given['user_id']!r}) differs from "
                f"its request's ({parent['user_id']!r}); omit it or make them equal."
            )
        row = dict(_INTERACTION_DEFAULTS)
        row.update(given)
        row["tools_used"] = row["tools_used"] if row["tools_used"] is not None else []
        row["content"] = row["content"] if row["content"] is not None else ""
        row["user_id"] = parent["user_id"]
        row["request_id"] = parent["request_id"]
        if row["created_at"] is None:
            row["created_at"] = interaction_stamps[position]
        interaction_rows.append(row)
    return request_rows, interaction_rows


def add_requests(session: Session, requests: Sequence[Mapping[str, Any]]) -> list[str]:
    """Insert requests with their interactions (all or nothing); return the request_ids.

    Each mapping: user_id (required), request_id (default: a uuid4 hex), session_id,
    agent_version, source, created_at, and `interactions`: a list of mappings with role, content,
    user_action, user_action_description, interacted_image_url, shadow_content, expert_content,
    tools_used, embedding, created_at. Interactions inherit the request's user_id. An existing
    request_id raises ConflictError and nothing is written.
    """
    request_rows, interaction_rows = _prepare(session, requests)
    if not request_rows:
        return []
    try:
        session.execute(insert(Request), request_rows)
    except IntegrityError as exc:
        ids = [row["request_id"] for row in request_rows]
        advice = "request ids must be unique: omit request_id to get a generated one."
        raise conflict(session, Request.request_id, ids, advice, exc) from None
    if interaction_rows:
        session.execute(insert(Interaction), interaction_rows)
    return [row["request_id"] for row in request_rows]


def add_request(
    session: Session,
    user_id: str,
    interactions: Sequence[Mapping[str, Any]] = (),
    *,
    request_id: str | None = None,
    session_id: str | None = None,
    agent_version: str | None = None,
    source: str | None = None,
    created_at: datetime | None = None,
) -> Request:
    """Insert one request with its interactions and return it (interactions loaded)."""
    item: dict[str, Any] = {
        "user_id": user_id,
        "interactions": as_list(interactions, "interactions"),
        "session_id": session_id,
        "agent_version": agent_version,
        "source": source,
        "created_at": created_at,
    }
    if request_id is not None:
        item["request_id"] = request_id
    (new_id,) = add_requests(session, [item])
    statement = (
        select(Request)
        .where(Request.request_id == new_id)
        .options(selectinload(Request.interactions))
    )
    return session.scalars(statement).one()


def get_request(session: Session, request_id: str) -> Request | None:
    """The request with this id and its interactions (in insertion order), or None."""
    statement = (
        select(Request)
        .where(Request.request_id == require_key(request_id, "request_id"))
        .options(selectinload(Request.interactions))
    )
    return session.scalars(statement).one_or_none()


def get_requests_by_user(
    session: Session,
    user_id: str,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    with_interactions: bool = True,
) -> list[Request]:
    """A user's requests, newest first (created_at, then request_id, descending)."""
    user_id = require_key(user_id, "user_id")
    limit, offset = page(limit, offset)
    with_interactions = require_bool(with_interactions, "with_interactions")
    statement = (
        select(Request)
        .where(Request.user_id == user_id)
        .order_by(Request.created_at.desc(), Request.request_id.desc())
        .limit(limit)
        .offset(offset)
    )
    if with_interactions:
        statement = statement.options(selectinload(Request.interactions))
    return list(session.scalars(statement).all())


def get_interactions(
    session: Session,
    *,
    user_id: str | None = None,
    request_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[Interaction]:
    """Interactions (of a user and/or a request), newest first (created_at, then id)."""
    limit, offset = page(limit, offset)
    where: list[ColumnElement[bool]] = []
    if user_id is not None:
        where.append(Interaction.user_id == filter_key(user_id, "user_id"))
    if request_id is not None:
        where.append(Interaction.request_id == filter_key(request_id, "request_id"))
    statement = (
        select(Interaction)
        .where(*where)
        .order_by(Interaction.created_at.desc(), Interaction.interaction_id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(statement).all())


def get_sessions(
    session: Session,
    user_id: str,
    *,
    limit: int = 20,
    offset: int = 0,
) -> list[SessionGroup]:
    """A user's sessions, most recently active first, each with its requests newest first.

    Sessions are ordered by their newest request's created_at, then session_id (descending);
    requests without a session_id form one group with session_id None, placed by the same rule
    (NULL sorts last among equal times on both databases). `limit`/`offset` count sessions.
    """
    user_id = require_key(user_id, "user_id")
    limit, offset = page(limit, offset)
    last = func.max(Request.created_at).label("last_request_at")
    found = session.execute(
        select(Request.session_id, last)
        .where(Request.user_id == user_id)
        .group_by(Request.session_id)
        .order_by(last.desc(), Request.session_id.desc().nulls_last())
        .limit(limit)
        .offset(offset)
    ).all()
    if not found:
        return []
    groups = {row.session_id: SessionGroup(row.session_id, row.last_request_at) for row in found}
    named = [sid for sid in groups if sid is not None]
    match: list[ColumnElement[bool]] = []
    if named:
        match.append(Request.session_id.in_(named))
    if None in groups:
        match.append(Request.session_id.is_(None))
    statement = (
        select(Request)
        .where(Request.user_id == user_id, or_(*match))
        .order_by(Request.created_at.desc(), Request.request_id.desc())
        .options(selectinload(Request.interactions))
    )
    for request in session.scalars(statement):
        groups[request.session_id].requests.append(request)
    return list(groups.values())


def delete_requests(session: Session, request_ids: Sequence[str]) -> int:
    """Delete requests by id; their interactions (and full-text entries) go with them.

    Returns how many requests were deleted (ids that do not exist are ignored).
    """
    deleted = 0
    for part in chunks(text_ids(request_ids, "request_ids")):
        result: Any = session.execute(delete(Request).where(Request.request_id.in_(part)))
        deleted += int(result.rowcount)
    return deleted


def delete_request(session: Session, request_id: str) -> bool:
    """Delete one request and its interactions; True if it existed."""
    return delete_requests(session, [request_id]) == 1


def delete_user_data(session: Session, user_id: str) -> dict[str, int]:
    """Delete everything stored for a user, in one transaction; return rows deleted per table.

    Covers interactions (dependants first), requests, profiles, user playbooks (their agent
    playbook source links cascade) and profile change logs.
    """
    user_id = require_key(user_id, "user_id")
    user_requests = select(Request.request_id).where(Request.user_id == user_id)
    deleted: dict[str, int] = {}

    def run(name: str, statement: Any) -> None:
        result: Any = session.execute(statement)
        deleted[name] = int(result.rowcount)

    run(
        "interactions",
        delete(Interaction).where(
            or_(Interaction.user_id == user_id, Interaction.request_id.in_(user_requests))
        ),
    )
    run("requests", delete(Request).where(Request.user_id == user_id))
    run("profiles", delete(Profile).where(Profile.user_id == user_id))
    run("user_playbooks", delete(UserPlaybook).where(UserPlaybook.user_id == user_id))
    run("profile_change_logs", delete(ProfileChangeLog).where(ProfileChangeLog.user_id == user_id))
    return deleted


def count_requests(
    session: Session, *, user_id: str | None = None, session_id: str | None = None
) -> int:
    """How many requests (of a user / a session) exist, read on the primary."""
    statement = select(func.count()).select_from(Request)
    if user_id is not None:
        statement = statement.where(Request.user_id == filter_key(user_id, "user_id"))
    if session_id is not None:
        statement = statement.where(Request.session_id == filter_key(session_id, "session_id"))
    return int(session.execute(statement).scalar_one())


def count_interactions(
    session: Session, *, user_id: str | None = None, request_id: str | None = None
) -> int:
    """How many interactions (of a user / a request) exist, read on the primary."""
    statement = select(func.count()).select_from(Interaction)
    if user_id is not None:
        statement = statement.where(Interaction.user_id == filter_key(user_id, "user_id"))
    if request_id is not None:
        statement = statement.where(Interaction.request_id == filter_key(request_id, "request_id"))
    return int(session.execute(statement).scalar_one())


class RequestOperations:
    """Requests with their interactions: add, get, list, sessions, delete, counts."""

    add_requests = write(add_requests)
    add_request = write(add_request)
    get_request = read(get_request)
    get_requests_by_user = read(get_requests_by_user)
    get_interactions = read(get_interactions)
    get_sessions = read(get_sessions)
    delete_request = write(delete_request)
    delete_requests = write(delete_requests)
    delete_user_data = write(delete_user_data)
    count_requests = fresh(count_requests)
    count_interactions = fresh(count_interactions)
