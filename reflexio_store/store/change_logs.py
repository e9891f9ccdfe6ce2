"""Change logs of profile extraction and playbook aggregation, listed newest first
(created_at, then id, descending)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflexio_store.models import PlaybookAggregationChangeLog, ProfileChangeLog
from reflexio_store.store._operation import read, write
from reflexio_store.store.paging import DEFAULT_LIMIT, paginate
from reflexio_store.validation import filter_key, optional_json_list, optional_key


def add_profile_change_log(
    session: Session,
    *,
    request_id: str | None = None,
    user_id: str | None = None,
    added_profiles: Sequence[Any] = (),
    removed_profiles: Sequence[Any] = (),
    mentioned_profiles: Sequence[Any] = (),
) -> ProfileChangeLog:
    row = ProfileChangeLog(
        request_id=optional_key(request_id, "request_id"),
        user_id=optional_key(user_id, "user_id"),
        added_profiles=optional_json_list(added_profiles, "added_profiles"),
        removed_profiles=optional_json_list(removed_profiles, "removed_profiles"),
        mentioned_profiles=optional_json_list(mentioned_profiles, "mentioned_profiles"),
    )
    session.add(row)
    session.flush()
    return row


def list_profile_change_logs(
    session: Session,
    *,
    user_id: str | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[ProfileChangeLog]:
    """Profile change logs (of one user when given), newest first."""
    stmt = select(ProfileChangeLog).order_by(
        ProfileChangeLog.created_at.desc(), ProfileChangeLog.id.desc()
    )
    if user_id is not None:
        stmt = stmt.where(ProfileChangeLog.user_id == filter_key(user_id, "user_id"))
    return list(session.scalars(paginate(stmt, limit, offset)))


def add_playbook_aggregation_change_log(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    before: Sequence[Any] = (),
    after: Sequence[Any] = (),
) -> PlaybookAggregationChangeLog:
    row = PlaybookAggregationChangeLog(
        playbook_name=optional_key(playbook_name, "playbook_name"),
        agent_version=optional_key(agent_version, "agent_version"),
        before=optional_json_list(before, "before"),
        after=optional_json_list(after, "after"),
    )
    session.add(row)
    session.flush()
    return row


def list_playbook_aggregation_change_logs(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[PlaybookAggregationChangeLog]:
    """Aggregation change logs (filtered by playbook_name and/or agent_version), newest first."""
    model = PlaybookAggregationChangeLog
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if playbook_name is not None:
        stmt = stmt.where(model.playbook_name == filter_key(playbook_name, "playbook_name"))
    if agent_version is not None:
        stmt = stmt.where(model.agent_version == filter_key(agent_version, "agent_version"))
    return list(session.scalars(paginate(stmt, limit, offset)))


class ChangeLogOperations:
    add_profile_change_log = write(add_profile_change_log)
    list_profile_change_logs = read(list_profile_change_logs)
    add_playbook_aggregation_change_log = write(add_playbook_aggregation_change_log)
    list_playbook_aggregation_change_logs = read(list_playbook_aggregation_change_logs)
