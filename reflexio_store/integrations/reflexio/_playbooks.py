"""Reflexio's PlaybookMixin (user and agent playbooks, evaluation results: 30 methods) on
reflexio_store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from reflexio.models.api_schema.domain import (
    AgentPlaybook,
    AgentSuccessEvaluationResult,
    PlaybookStatus,
    Status,
    StructuredData,
    UserPlaybook,
)
from reflexio.models.api_schema.retriever_schema import (
    SearchAgentPlaybookRequest,
    SearchUserPlaybookRequest,
)
from reflexio.models.config_schema import SearchOptions
from sqlalchemy import ColumnElement, delete, func, select, update

from reflexio_store import models as m
from reflexio_store.dialect import dialect_insert
from reflexio_store.enums import PlaybookReviewStatus
from reflexio_store.enums import Status as StoreStatus
from reflexio_store.integrations.reflexio import convert as c
from reflexio_store.integrations.reflexio._core import (
    AdapterCore,
    ReflexioNotFoundError,
    as_list,
    id_list,
    one_status,
    require_limit,
    rowcount,
    status_condition,
)
from reflexio_store.integrations.reflexio._search import Mode, pick_mode
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    check_json,
    filter_key,
    optional_text,
    require_text,
)

_CURRENT_ONLY: list[Status | None] = [None]
UP = m.UserPlaybook
AP = m.AgentPlaybook
EV = m.AgentSuccessEvaluationResult


def _user_playbook_values(item: UserPlaybook, embedding: list[float] | None) -> dict[str, Any]:
    sources = list(item.source_interaction_ids or [])
    check_json(sources, "source_interaction_ids")
    return {
        "user_id": filter_key(item.user_id, "user_id"),
        "playbook_name": require_text(
            item.playbook_name, "playbook_name", allow_empty=True, max_bytes=MAX_KEY_BYTES
        ),
        "request_id": filter_key(item.request_id, "request_id"),
        "agent_version": filter_key(item.agent_version, "agent_version"),
        "content": require_text(item.content, "content", allow_empty=True),
        **_structured(item.structured_data),
        "source_interaction_ids": sources,
        "status": c.store_status(item.status),
        "source": filter_key(item.source, "source"),
        "expanded_terms": optional_text(item.expanded_terms, "expanded_terms"),
        "embedding": embedding,
        "created_at": c.to_datetime(item.created_at, "created_at"),
    }


def _agent_playbook_values(item: AgentPlaybook, embedding: list[float] | None) -> dict[str, Any]:
    return {
        "playbook_name": require_text(
            item.playbook_name, "playbook_name", allow_empty=True, max_bytes=MAX_KEY_BYTES
        ),
        "agent_version": filter_key(item.agent_version, "agent_version"),
        "content": require_text(item.content, "content", allow_empty=True),
        **_structured(item.structured_data),
        "playbook_status": c.review_status(item.playbook_status),
        "playbook_metadata": c.metadata_in(item.playbook_metadata),
        "status": c.store_status(item.status),
        "expanded_terms": optional_text(item.expanded_terms, "expanded_terms"),
        "embedding": embedding,
        "created_at": c.to_datetime(item.created_at, "created_at"),
    }


def _structured(data: StructuredData) -> dict[str, Any]:
    values = c.split_structured(data)
    check_json(values, "structured_data")
    return values


def _name_version(model: Any, playbook_name: str | None, agent_version: str | None) -> list[Any]:
    """Reflexio's optional playbook_name / agent_version filters (given means equal)."""
    where = []
    if agent_version is not None:
        where.append(model.agent_version == agent_version)
    if playbook_name is not None:
        where.append(model.playbook_name == playbook_name)
    return where


def _not_approved() -> ColumnElement[bool]:
    return AP.playbook_status != PlaybookReviewStatus.APPROVED


class PlaybookPart(AdapterCore):
    def _insert_playbooks(
        self,
        items: Sequence[Any],
        values: Callable[[Any, list[float] | None], dict[str, Any]],
        key: Any,
    ) -> None:
        """Embed, insert in one statement, and give each Reflexio model its new id."""
        if not items:
            return
        texts = [c.playbook_embedding_text(p.content, p.structured_data) for p in items]
        rows = []
        for item, vector in zip(items, self._vectors(texts), strict=True):
            item.embedding = as_list(vector)
            rows.append(values(item, vector))
        with self._write() as session:
            statement = dialect_insert(session, key.class_).returning(
                key, sort_by_parameter_order=True
            )
            ids = session.scalars(statement, rows).all()
        for item, new_id in zip(items, ids, strict=True):
            setattr(item, key.key, int(new_id))

    # -- user playbooks ----------------------------------------------------------------------

    def save_user_playbooks(self, user_playbooks: list[UserPlaybook]) -> None:
        self._insert_playbooks(user_playbooks, _user_playbook_values, UP.user_playbook_id)

    def get_user_playbooks(
        self,
        limit: int = 100,
        user_id: str | None = None,
        playbook_name: str | None = None,
        agent_version: str | None = None,
        status_filter: list[Status | None] | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        include_embedding: bool = False,
    ) -> list[UserPlaybook]:
        stmt = select(UP).order_by(UP.created_at.desc(), UP.user_playbook_id.desc())
        stmt = stmt.where(*_name_version(UP, playbook_name or None, agent_version))
        if user_id is not None:
            stmt = stmt.where(UP.user_id == user_id)
        if start_time is not None:
            stmt = stmt.where(UP.created_at >= c.to_datetime(start_time, "start_time"))
        if end_time is not None:
            stmt = stmt.where(UP.created_at <= c.to_datetime(end_time, "end_time"))
        if status_filter is not None:
            stmt = stmt.where(status_condition(UP.status, status_filter))
        stmt = stmt.limit(require_limit(limit))
        with self._fresh() as session:
            return [
                c.user_playbook_out(r, include_embedding=include_embedding)
                for r in session.scalars(stmt)
            ]

    def count_user_playbooks(
        self,
        user_id: str | None = None,
        playbook_name: str | None = None,
        min_user_playbook_id: int | None = None,
        agent_version: str | None = None,
        status_filter: list[Status | None] | None = None,
    ) -> int:
        stmt = select(func.count()).select_from(UP)
        stmt = stmt.where(*_name_version(UP, playbook_name or None, agent_version))
        if user_id is not None:
            stmt = stmt.where(UP.user_id == user_id)
        if min_user_playbook_id is not None:
            stmt = stmt.where(UP.user_playbook_id > min_user_playbook_id)
        if status_filter is not None:
            stmt = stmt.where(status_condition(UP.status, status_filter))
        with self._fresh() as session:
            return int(session.scalar(stmt) or 0)

    def count_user_playbooks_by_session(self, session_id: str) -> int:
        stmt = (
            select(func.count())
            .select_from(UP)
            .join(m.Request, UP.request_id == m.Request.request_id)
            .where(m.Request.session_id == session_id)
        )
        with self._fresh() as session:
            return int(session.scalar(stmt) or 0)

    def delete_all_user_playbooks(self) -> None:
        with self._write() as session:
            session.execute(delete(UP))

    def delete_all_user_playbooks_by_playbook_name(
        self, playbook_name: str, agent_version: str | None = None
    ) -> None:
        with self._write() as session:
            session.execute(delete(UP).where(*_name_version(UP, playbook_name, agent_version)))

    def delete_user_playbook(self, user_playbook_id: int) -> None:
        with self._write() as session:
            session.execute(delete(UP).where(UP.user_playbook_id == user_playbook_id))

    def update_all_user_playbooks_status(
        self,
        old_status: Status | None,
        new_status: Status | None,
        agent_version: str | None = None,
        playbook_name: str | None = None,
    ) -> int:
        stmt = (
            update(UP)
            .where(
                one_status(UP.status, old_status), *_name_version(UP, playbook_name, agent_version)
            )
            .values(status=c.store_status(new_status))
        )
        with self._write() as session:
            return rowcount(session.execute(stmt))

    def delete_all_user_playbooks_by_status(
        self,
        status: Status,
        agent_version: str | None = None,
        playbook_name: str | None = None,
    ) -> int:
        stmt = delete(UP).where(
            one_status(UP.status, status), *_name_version(UP, playbook_name, agent_version)
        )
        with self._write() as session:
            return rowcount(session.execute(stmt))

    def delete_user_playbooks_by_ids(self, user_playbook_ids: list[int]) -> int:
        user_playbook_ids = id_list(user_playbook_ids, "user_playbook_ids")
        if not user_playbook_ids:
            return 0
        with self._write() as session:
            return rowcount(
                session.execute(delete(UP).where(UP.user_playbook_id.in_(user_playbook_ids)))
            )

    def has_user_playbooks_with_status(
        self,
        status: Status | None,
        agent_version: str | None = None,
        playbook_name: str | None = None,
    ) -> bool:
        stmt = (
            select(UP.user_playbook_id)
            .where(one_status(UP.status, status), *_name_version(UP, playbook_name, agent_version))
            .limit(1)
        )
        with self._fresh() as session:
            return session.execute(stmt).first() is not None

    def update_user_playbook(
        self,
        user_playbook_id: int,
        playbook_name: str | None = None,
        content: str | None = None,
        structured_data: StructuredData | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if playbook_name is not None:
            values["playbook_name"] = require_text(
                playbook_name, "playbook_name", allow_empty=True, max_bytes=MAX_KEY_BYTES
            )
        if content is not None:
            values["content"] = require_text(content, "content", allow_empty=True)
        if structured_data is not None:
            values.update(_structured(structured_data))
        with self._write() as session:
            if session.get(UP, user_playbook_id) is None:
                raise ReflexioNotFoundError(f"User playbook with ID {user_playbook_id} not found")
            if values:
                session.execute(
                    update(UP).where(UP.user_playbook_id == user_playbook_id).values(**values)
                )

    # -- agent playbooks ---------------------------------------------------------------------

    def save_agent_playbooks(self, agent_playbooks: list[AgentPlaybook]) -> list[AgentPlaybook]:
        self._insert_playbooks(agent_playbooks, _agent_playbook_values, AP.agent_playbook_id)
        return list(agent_playbooks)

    def get_agent_playbooks(
        self,
        limit: int = 100,
        playbook_name: str | None = None,
        agent_version: str | None = None,
        status_filter: list[Status | None] | None = None,
        playbook_status_filter: list[PlaybookStatus] | None = None,
    ) -> list[AgentPlaybook]:
        statuses = _CURRENT_ONLY if status_filter is None else status_filter
        stmt = (
            select(AP)
            .where(
                *_name_version(AP, playbook_name or None, agent_version),
                status_condition(AP.status, statuses),
            )
            .order_by(AP.created_at.desc(), AP.agent_playbook_id.desc())
            .limit(require_limit(limit))
        )
        if playbook_status_filter:
            stmt = stmt.where(
                AP.playbook_status.in_([c.review_status(s) for s in playbook_status_filter])
            )
        with self._fresh() as session:
            return [c.agent_playbook_out(r) for r in session.scalars(stmt)]

    def delete_all_agent_playbooks(self) -> None:
        with self._write() as session:
            session.execute(delete(AP))

    def delete_agent_playbook(self, agent_playbook_id: int) -> None:
        with self._write() as session:
            session.execute(delete(AP).where(AP.agent_playbook_id == agent_playbook_id))

    def delete_all_agent_playbooks_by_playbook_name(
        self, playbook_name: str, agent_version: str | None = None
    ) -> None:
        with self._write() as session:
            session.execute(delete(AP).where(*_name_version(AP, playbook_name, agent_version)))

    def update_agent_playbook_status(
        self, agent_playbook_id: int, playbook_status: PlaybookStatus
    ) -> None:
        self.update_agent_playbook(agent_playbook_id, playbook_status=playbook_status)

    def update_agent_playbook(
        self,
        agent_playbook_id: int,
        playbook_name: str | None = None,
        content: str | None = None,
        structured_data: StructuredData | None = None,
        playbook_status: PlaybookStatus | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if playbook_name is not None:
            values["playbook_name"] = require_text(
                playbook_name, "playbook_name", allow_empty=True, max_bytes=MAX_KEY_BYTES
            )
        if content is not None:
            values["content"] = require_text(content, "content", allow_empty=True)
        if structured_data is not None:
            values.update(_structured(structured_data))
        if playbook_status is not None:
            values["playbook_status"] = c.review_status(playbook_status)
        with self._write() as session:
            if session.get(AP, agent_playbook_id) is None:
                raise ReflexioNotFoundError(f"Agent playbook with ID {agent_playbook_id} not found")
            if values:
                session.execute(
                    update(AP).where(AP.agent_playbook_id == agent_playbook_id).values(**values)
                )

    def archive_agent_playbooks_by_playbook_name(
        self, playbook_name: str, agent_version: str | None = None
    ) -> None:
        with self._write() as session:
            session.execute(
                update(AP)
                .where(_not_approved(), *_name_version(AP, playbook_name, agent_version))
                .values(status=StoreStatus.ARCHIVED)
            )

    def archive_agent_playbooks_by_ids(self, agent_playbook_ids: list[int]) -> None:
        agent_playbook_ids = id_list(agent_playbook_ids, "agent_playbook_ids")
        if not agent_playbook_ids:
            return
        with self._write() as session:
            session.execute(
                update(AP)
                .where(AP.agent_playbook_id.in_(agent_playbook_ids), _not_approved())
                .values(status=StoreStatus.ARCHIVED)
            )

    def restore_archived_agent_playbooks_by_playbook_name(
        self, playbook_name: str, agent_version: str | None = None
    ) -> None:
        with self._write() as session:
            session.execute(
                update(AP)
                .where(
                    AP.status == StoreStatus.ARCHIVED,
                    *_name_version(AP, playbook_name, agent_version),
                )
                .values(status=StoreStatus.CURRENT)
            )

    def restore_archived_agent_playbooks_by_ids(self, agent_playbook_ids: list[int]) -> None:
        agent_playbook_ids = id_list(agent_playbook_ids, "agent_playbook_ids")
        if not agent_playbook_ids:
            return
        with self._write() as session:
            session.execute(
                update(AP)
                .where(
                    AP.agent_playbook_id.in_(agent_playbook_ids),
                    AP.status == StoreStatus.ARCHIVED,
                )
                .values(status=StoreStatus.CURRENT)
            )

    def delete_archived_agent_playbooks_by_playbook_name(
        self, playbook_name: str, agent_version: str | None = None
    ) -> None:
        with self._write() as session:
            session.execute(
                delete(AP).where(
                    AP.status == StoreStatus.ARCHIVED,
                    *_name_version(AP, playbook_name, agent_version),
                )
            )

    def delete_agent_playbooks_by_ids(self, agent_playbook_ids: list[int]) -> None:
        agent_playbook_ids = id_list(agent_playbook_ids, "agent_playbook_ids")
        if not agent_playbook_ids:
            return
        with self._write() as session:
            session.execute(delete(AP).where(AP.agent_playbook_id.in_(agent_playbook_ids)))

    # -- search ------------------------------------------------------------------------------

    def search_user_playbooks(
        self,
        request: SearchUserPlaybookRequest,
        options: SearchOptions | None = None,
    ) -> list[UserPlaybook]:
        embedding = options.query_embedding if options else None
        mode = pick_mode(request.search_mode, request.query, embedding)
        top_k = request.top_k or 10
        after, before = _window(request.start_time, request.end_time)
        if mode is None:
            stmt = select(UP).order_by(UP.created_at.desc(), UP.user_playbook_id.desc())
            stmt = stmt.where(
                *_name_version(UP, request.playbook_name or None, request.agent_version or None)
            )
            if request.user_id:
                stmt = stmt.where(UP.user_id == request.user_id)
            if after is not None:
                stmt = stmt.where(UP.created_at >= after)
            if before is not None:
                stmt = stmt.where(UP.created_at <= before)
            if request.status_filter is not None:
                stmt = stmt.where(status_condition(UP.status, request.status_filter))
            with self._fresh() as session:
                return [c.user_playbook_out(r) for r in session.scalars(stmt.limit(top_k))]
        hits = self.store.search_user_playbooks(
            **_search_args(request.query, embedding, mode, options),
            top_k=top_k,
            threshold=request.threshold if request.threshold is not None else 0.4,
            user_id=request.user_id or None,
            playbook_name=request.playbook_name or None,
            agent_version=request.agent_version or None,
            status=_statuses(request.status_filter),
            created_after=after,
            created_before=_exclusive(before),
        )
        return [c.user_playbook_out(h.item) for h in hits]

    def search_agent_playbooks(
        self,
        request: SearchAgentPlaybookRequest,
        options: SearchOptions | None = None,
    ) -> list[AgentPlaybook]:
        embedding = options.query_embedding if options else None
        mode = pick_mode(request.search_mode, request.query, embedding)
        top_k = request.top_k or 10
        after, before = _window(request.start_time, request.end_time)
        review = (
            c.review_status(request.playbook_status_filter)
            if request.playbook_status_filter
            else None
        )
        if mode is None:
            stmt = select(AP).order_by(AP.created_at.desc(), AP.agent_playbook_id.desc())
            stmt = stmt.where(
                *_name_version(AP, request.playbook_name or None, request.agent_version or None)
            )
            if review is not None:
                stmt = stmt.where(AP.playbook_status == review)
            if after is not None:
                stmt = stmt.where(AP.created_at >= after)
            if before is not None:
                stmt = stmt.where(AP.created_at <= before)
            if request.status_filter is not None:
                stmt = stmt.where(status_condition(AP.status, request.status_filter))
            with self._fresh() as session:
                return [c.agent_playbook_out(r) for r in session.scalars(stmt.limit(top_k))]
        hits = self.store.search_agent_playbooks(
            **_search_args(request.query, embedding, mode, options),
            top_k=top_k,
            threshold=request.threshold if request.threshold is not None else 0.4,
            playbook_name=request.playbook_name or None,
            agent_version=request.agent_version or None,
            playbook_status=review,
            status=_statuses(request.status_filter),
            created_after=after,
            created_before=_exclusive(before),
        )
        return [c.agent_playbook_out(h.item) for h in hits]

    # -- evaluation results ------------------------------------------------------------------

    def save_agent_success_evaluation_results(
        self, results: list[AgentSuccessEvaluationResult]
    ) -> None:
        """One row per (session_id, evaluation_name): saving the pair again updates it."""
        if not results:
            return
        texts = [f"{r.failure_type} {r.failure_reason}" for r in results]
        vectors = self._vectors(texts)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for result, vector in zip(results, vectors, strict=True):
            result.embedding = as_list(vector)
            row = {
                "session_id": require_text(
                    result.session_id, "session_id", max_bytes=MAX_KEY_BYTES
                ),
                "evaluation_name": filter_key(result.evaluation_name, "evaluation_name") or "",
                "agent_version": filter_key(result.agent_version, "agent_version"),
                "is_success": bool(result.is_success),
                "failure_type": optional_text(result.failure_type, "failure_type"),
                "failure_reason": optional_text(result.failure_reason, "failure_reason"),
                "regular_vs_shadow": (
                    result.regular_vs_shadow.value if result.regular_vs_shadow else None
                ),
                "number_of_correction_per_session": result.number_of_correction_per_session,
                "user_turns_to_resolution": result.user_turns_to_resolution,
                "is_escalated": bool(result.is_escalated),
                "embedding": vector,
                "created_at": c.to_datetime(result.created_at, "created_at"),
            }
            rows[(str(row["session_id"]), str(row["evaluation_name"]))] = row
        with self._write() as session:
            stmt = dialect_insert(session, EV)
            updated = [
                k for k in next(iter(rows.values())) if k not in ("session_id", "evaluation_name")
            ]
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["session_id", "evaluation_name"],
                    set_={k: stmt.excluded[k] for k in updated},
                ),
                list(rows.values()),
            )

    def get_agent_success_evaluation_results(
        self, limit: int = 100, agent_version: str | None = None
    ) -> list[AgentSuccessEvaluationResult]:
        stmt = select(EV).order_by(EV.created_at.desc(), EV.id.desc()).limit(require_limit(limit))
        if agent_version is not None:
            stmt = stmt.where(EV.agent_version == agent_version)
        with self._fresh() as session:
            return [c.evaluation_out(r) for r in session.scalars(stmt)]

    def delete_all_agent_success_evaluation_results(self) -> None:
        with self._write() as session:
            session.execute(delete(EV))


def _window(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """Reflexio passes datetimes (naive ones mean UTC) and rounds them to whole seconds."""

    def whole(value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return c.to_datetime(int(value.replace(tzinfo=value.tzinfo or UTC).timestamp()), "time")

    return whole(start), whole(end)


def _exclusive(end: datetime | None) -> datetime | None:
    """The store's created_before is exclusive; Reflexio's end_time is inclusive."""
    from datetime import timedelta

    return None if end is None else end + timedelta(microseconds=1)


def _statuses(status_filter: Sequence[Any] | None) -> list[StoreStatus] | None:
    """None (and an empty list) mean any status, as in Reflexio's playbook searches."""
    if not status_filter:
        return None
    return c.store_statuses(status_filter)


def _search_args(
    query: str | None, embedding: Sequence[float] | None, mode: Mode, options: SearchOptions | None
) -> dict[str, Any]:
    return {
        "query": query if mode != "vector" else None,
        "embedding": list(embedding) if embedding and mode != "text" else None,
        "mode": mode,
        "text_weight": options.fts_weight if options else 1.0,
        "vector_weight": options.vector_weight if options else 1.0,
    }
