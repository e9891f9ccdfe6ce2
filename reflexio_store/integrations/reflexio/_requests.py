"""Reflexio's RequestMixin (9 methods) on reflexio_store. Deleting a request deletes its
interactions (and their search entries) through the foreign key's cascade."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reflexio.models.api_schema.domain import Interaction, Request
from reflexio.models.api_schema.internal_schema import RequestInteractionDataModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from reflexio_store import models as m
from reflexio_store.dialect import dialect_insert
from reflexio_store.integrations.reflexio import convert as c
from reflexio_store.integrations.reflexio._core import (
    AdapterCore,
    key_list,
    require_limit,
    rowcount,
)
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    filter_key,
    require_text,
)


def interactions_by_request(
    session: Session, request_ids: Sequence[str]
) -> dict[str, list[Interaction]]:
    """Each request's interactions, oldest first."""
    out: dict[str, list[Interaction]] = {rid: [] for rid in request_ids}
    if not request_ids:
        return out
    stmt = (
        select(m.Interaction)
        .where(m.Interaction.request_id.in_(list(request_ids)))
        .order_by(m.Interaction.created_at, m.Interaction.interaction_id)
    )
    for row in session.scalars(stmt):
        out[row.request_id].append(c.interaction_out(row))
    return out


class RequestPart(AdapterCore):
    def add_request(self, request: Request) -> None:
        """Insert or replace a request; its interactions stay (Reflexio's replace keeps them)."""
        values: dict[str, Any] = {
            "request_id": require_text(request.request_id, "request_id", max_bytes=MAX_KEY_BYTES),
            "user_id": require_text(request.user_id, "user_id", max_bytes=MAX_KEY_BYTES),
            "created_at": c.to_datetime(request.created_at, "created_at"),
            "source": filter_key(request.source, "source"),
            "agent_version": filter_key(request.agent_version, "agent_version"),
            "session_id": filter_key(request.session_id, "session_id"),
        }
        with self._write() as session:
            stmt = dialect_insert(session, m.Request).values(**values)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["request_id"],
                    set_={k: stmt.excluded[k] for k in values if k != "request_id"},
                )
            )

    def get_request(self, request_id: str) -> Request | None:
        with self._fresh() as session:
            row = session.get(m.Request, request_id)
            return c.request_out(row) if row is not None else None

    def delete_request(self, request_id: str) -> None:
        with self._write() as session:
            session.execute(delete(m.Request).where(m.Request.request_id == request_id))

    def delete_session(self, session_id: str) -> int:
        with self._write() as session:
            return rowcount(
                session.execute(delete(m.Request).where(m.Request.session_id == session_id))
            )

    def delete_all_requests(self) -> None:
        with self._write() as session:
            session.execute(delete(m.Interaction))
            session.execute(delete(m.Request))

    def delete_requests_by_ids(self, request_ids: list[str]) -> int:
        request_ids = key_list(request_ids, "request_ids")
        if not request_ids:
            return 0
        with self._write() as session:
            return rowcount(
                session.execute(delete(m.Request).where(m.Request.request_id.in_(request_ids)))
            )

    def get_sessions(
        self,
        user_id: str | None = None,
        request_id: str | None = None,
        session_id: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        top_k: int | None = 30,
        offset: int = 0,
    ) -> dict[str, list[RequestInteractionDataModel]]:
        """Requests newest first (top_k, default 100 when None; offset), grouped by session_id
        ("" for requests without one), each with its interactions oldest first."""
        stmt = select(m.Request).order_by(m.Request.created_at.desc(), m.Request.request_id.desc())
        if user_id:
            stmt = stmt.where(m.Request.user_id == user_id)
        if request_id:
            stmt = stmt.where(m.Request.request_id == request_id)
        if session_id:
            stmt = stmt.where(m.Request.session_id == session_id)
        if start_time:
            stmt = stmt.where(m.Request.created_at >= c.to_datetime(start_time, "start_time"))
        if end_time:
            stmt = stmt.where(m.Request.created_at <= c.to_datetime(end_time, "end_time"))
        stmt = stmt.limit(require_limit(top_k or 100, "top_k")).offset(
            require_limit(offset, "offset")
        )
        grouped: dict[str, list[RequestInteractionDataModel]] = {}
        with self._fresh() as session:
            rows = list(session.scalars(stmt))
            interactions = interactions_by_request(session, [r.request_id for r in rows])
        for row in rows:
            group = row.session_id or ""
            grouped.setdefault(group, []).append(
                RequestInteractionDataModel(
                    session_id=group,
                    request=c.request_out(row),
                    interactions=interactions[row.request_id],
                )
            )
        return grouped

    def get_rerun_user_ids(
        self,
        user_id: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        source: str | None = None,
        agent_version: str | None = None,
    ) -> list[str]:
        stmt = select(m.Request.user_id).distinct()
        if user_id:
            stmt = stmt.where(m.Request.user_id == user_id)
        if start_time:
            stmt = stmt.where(m.Request.created_at >= c.to_datetime(start_time, "start_time"))
        if end_time:
            stmt = stmt.where(m.Request.created_at <= c.to_datetime(end_time, "end_time"))
        if source:
            stmt = stmt.where(m.Request.source == source)
        if agent_version:
            stmt = stmt.where(m.Request.agent_version == agent_version)
        with self._fresh() as session:
            return sorted(session.scalars(stmt))

    def get_requests_by_session(self, user_id: str, session_id: str) -> list[Request]:
        stmt = (
            select(m.Request)
            .where(m.Request.user_id == user_id, m.Request.session_id == session_id)
            .order_by(m.Request.created_at, m.Request.request_id)
        )
        with self._fresh() as session:
            return [c.request_out(r) for r in session.scalars(stmt)]
