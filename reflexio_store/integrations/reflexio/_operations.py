"""Reflexio's OperationMixin (operation state, the in-progress lock, new-interaction windows:
10 methods) on reflexio_store's operation_states table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reflexio.models.api_schema.domain import Interaction, Request
from reflexio.models.api_schema.internal_schema import RequestInteractionDataModel
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from reflexio_store import models as m
from reflexio_store.dialect import dialect_insert
from reflexio_store.errors import ConflictError, ValidationError
from reflexio_store.integrations.reflexio import convert as c
from reflexio_store.integrations.reflexio._core import AdapterCore, inserted, key_list
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    json_object,
    require_text,
)

OS = m.OperationState


def _state(value: Any) -> dict[str, Any]:
    return json_object(value, "operation_state")


def _record(row: m.OperationState) -> dict[str, Any]:
    return {
        "service_name": row.service_name,
        "operation_state": row.state,
        "updated_at": row.updated_at.isoformat(),
    }


def _grouped(
    rows: Sequence[tuple[m.Interaction, m.Request]],
) -> list[RequestInteractionDataModel]:
    """Interactions grouped by request (each group oldest first), groups ordered by their
    oldest interaction; a group is named by its session, else by its request."""
    requests: dict[str, Request] = {}
    items: dict[str, list[Interaction]] = {}
    for interaction, parent in rows:
        if parent.request_id not in requests:
            requests[parent.request_id] = c.request_out(parent)
            items[parent.request_id] = []
        items[parent.request_id].append(c.interaction_out(interaction))
    groups = []
    for request_id, request in requests.items():
        interactions = sorted(items[request_id], key=lambda i: i.created_at or 0)
        groups.append(
            RequestInteractionDataModel(
                session_id=request.session_id or request.request_id,
                request=request,
                interactions=interactions,
            )
        )
    groups.sort(key=lambda g: min((i.created_at or 0) for i in g.interactions))
    return groups


def _joined() -> Any:
    return select(m.Interaction, m.Request).join(
        m.Request, m.Interaction.request_id == m.Request.request_id
    )


class OperationPart(AdapterCore):
    def create_operation_state(self, service_name: str, operation_state: dict[Any, Any]) -> None:
        values = {
            "service_name": require_text(service_name, "service_name", max_bytes=MAX_KEY_BYTES),
            "state": _state(operation_state),
        }
        with self._write() as session:
            stmt = dialect_insert(session, OS).values(**values).on_conflict_do_nothing()
            if not inserted(session.execute(stmt.returning(OS.service_name))):
                raise ConflictError(
                    f"Operation state {service_name!r} already exists; use "
                    "upsert_operation_state or update_operation_state to change it."
                )

    def upsert_operation_state(self, service_name: str, operation_state: dict[Any, Any]) -> None:
        now = datetime.now(UTC)
        values = {
            "service_name": require_text(service_name, "service_name", max_bytes=MAX_KEY_BYTES),
            "state": _state(operation_state),
            "updated_at": now,
        }
        with self._write() as session:
            stmt = dialect_insert(session, OS).values(**values)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["service_name"],
                    set_={"state": stmt.excluded.state, "updated_at": now},
                )
            )

    def get_operation_state(self, service_name: str) -> dict[Any, Any] | None:
        with self._fresh() as session:
            row = session.get(OS, service_name)
            return _record(row) if row is not None else None

    def get_operation_state_with_new_request_interaction(
        self,
        service_name: str,
        user_id: str | None,
        sources: list[str] | None = None,
    ) -> tuple[dict[Any, Any], list[RequestInteractionDataModel]]:
        record = self.get_operation_state(service_name)
        state: dict[str, Any] = {}
        if record and isinstance(record.get("operation_state"), dict):
            state = record["operation_state"]
        processed = state.get("last_processed_interaction_ids") or []
        since = state.get("last_processed_timestamp")
        stmt = _joined().order_by(m.Interaction.created_at, m.Interaction.interaction_id)
        if user_id:
            stmt = stmt.where(m.Interaction.user_id == user_id)
        if since is not None:
            stmt = stmt.where(
                m.Interaction.created_at >= c.to_datetime(since, "last_processed_timestamp")
            )
        excluded: set[int] = set()
        if processed:
            try:
                excluded = {int(x) for x in processed}
            except (TypeError, ValueError, OverflowError):
                raise ValidationError(
                    "last_processed_interaction_ids in the operation state must be integers."
                ) from None
        if sources:
            stmt = stmt.where(m.Request.source.in_(key_list(sources, "sources")))
        with self._fresh() as session:
            # Processed ids are left out here, not in SQL: Reflexio's list grows with its history,
            # and a NOT IN of more than 65,535 values is more than PostgreSQL binds.
            rows = [
                (i, r) for i, r in session.execute(stmt).all() if i.interaction_id not in excluded
            ]
            return state, _grouped(rows)

    def get_last_k_interactions_grouped(
        self,
        user_id: str | None,
        k: int,
        sources: list[str] | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        agent_version: str | None = None,
    ) -> tuple[list[RequestInteractionDataModel], list[Interaction]]:
        stmt = _joined().order_by(
            m.Interaction.created_at.desc(), m.Interaction.interaction_id.desc()
        )
        if user_id:
            stmt = stmt.where(m.Interaction.user_id == user_id)
        if sources:
            stmt = stmt.where(m.Request.source.in_(key_list(sources, "sources")))
        if start_time:
            stmt = stmt.where(m.Interaction.created_at >= c.to_datetime(start_time, "start_time"))
        if end_time:
            stmt = stmt.where(m.Interaction.created_at <= c.to_datetime(end_time, "end_time"))
        if agent_version:
            stmt = stmt.where(m.Request.agent_version == agent_version)
        with self._fresh() as session:
            rows = [(i, r) for i, r in session.execute(stmt.limit(max(int(k), 0))).all()]
            flat = [c.interaction_out(i) for i, _ in rows]
            return _grouped(rows), flat

    def update_operation_state(self, service_name: str, operation_state: dict[Any, Any]) -> None:
        with self._write() as session:
            session.execute(
                update(OS)
                .where(OS.service_name == service_name)
                .values(state=_state(operation_state), updated_at=datetime.now(UTC))
            )

    def get_all_operation_states(self) -> list[dict[Any, Any]]:
        with self._fresh() as session:
            return [_record(r) for r in session.scalars(select(OS).order_by(OS.service_name))]

    def delete_operation_state(self, service_name: str) -> None:
        with self._write() as session:
            session.execute(delete(OS).where(OS.service_name == service_name))

    def delete_all_operation_states(self) -> None:
        with self._write() as session:
            session.execute(delete(OS))

    def try_acquire_in_progress_lock(
        self, state_key: str, request_id: str, stale_lock_seconds: int = 300
    ) -> dict[Any, Any]:
        """Take the in-progress lock, or record `request_id` as pending behind its holder.

        One transaction: the row is created if missing, then locked (SELECT ... FOR UPDATE on
        PostgreSQL; SQLite write transactions are serial), read and written, so of concurrent
        callers exactly one acquires.
        """
        key = require_text(state_key, "state_key", max_bytes=MAX_KEY_BYTES)
        fresh_state = {
            "status": "in_progress",
            "current_request_id": request_id,
            "pending_request_id": None,
        }
        now = datetime.now(UTC)
        with self._write() as session:
            created = session.execute(
                dialect_insert(session, OS)
                .values(service_name=key, state=fresh_state, updated_at=now)
                .on_conflict_do_nothing()
                .returning(OS.service_name)
            )
            if inserted(created):
                return {"acquired": True, "state": fresh_state}
            row = session.execute(
                select(OS).where(OS.service_name == key).with_for_update()
            ).scalar_one()
            current = dict(row.state or {})
            stale = now - row.updated_at > timedelta(seconds=stale_lock_seconds)
            if current.get("status") != "in_progress" or stale:
                _write_state(session, key, fresh_state, now)
                return {"acquired": True, "state": fresh_state}
            current["pending_request_id"] = request_id
            _write_state(session, key, current, now)
            return {"acquired": False, "state": current}


def _write_state(session: Session, key: str, state: dict[str, Any], now: datetime) -> None:
    session.execute(
        update(OS).where(OS.service_name == key).values(state=_state(state), updated_at=now)
    )
