"""Reflexio's ExtrasMixin (dashboard, statistics, change logs, interactions by request:
10 methods) on reflexio_store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reflexio.models.api_schema.domain import (
    Interaction,
    PlaybookAggregationChangeLog,
    ProfileChangeLog,
)
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from reflexio_store import models as m
from reflexio_store.enums import Status as StoreStatus
from reflexio_store.integrations.reflexio import convert as c
from reflexio_store.integrations.reflexio._core import AdapterCore, key_list, require_limit
from reflexio_store.validation import check_json

PCL = m.ProfileChangeLog
PACL = m.PlaybookAggregationChangeLog


def _between(column: Any, start: datetime, end: datetime, *, end_inclusive: bool) -> Any:
    upper: ColumnElement[bool] = column <= end if end_inclusive else column < end
    return (column >= start) & upper


def _count(session: Session, model: Any, where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(where)) or 0)


def _profile_time() -> Any:
    return func.coalesce(m.Profile.last_modified_at, m.Profile.created_at)


class ExtrasPart(AdapterCore):
    def get_dashboard_stats(self, days_back: int = 30) -> dict[Any, Any]:
        now = datetime.now(UTC)
        period = timedelta(days=days_back)
        start = now - period
        previous = start - period
        IN, P, U, A, E = (
            m.Interaction,
            m.Profile,
            m.UserPlaybook,
            m.AgentPlaybook,
            m.AgentSuccessEvaluationResult,
        )

        def stats(session: Session, lo: datetime, hi: datetime, inclusive: bool) -> dict[str, Any]:
            def window(column: Any) -> Any:
                return _between(column, lo, hi, end_inclusive=inclusive)

            successes = list(session.scalars(select(E.is_success).where(window(E.created_at))))
            rate = (sum(1 for s in successes if s) / len(successes) * 100) if successes else 0.0
            return {
                "total_interactions": _count(session, IN, window(IN.created_at)),
                "total_profiles": _count(session, P, window(_profile_time())),
                "total_playbooks": _count(session, U, window(U.created_at))
                + _count(session, A, window(A.created_at)),
                "success_rate": rate,
            }

        def series(session: Session, column: Any) -> list[int]:
            stmt = select(column).where(_between(column, start, now, end_inclusive=True))
            return [c.to_epoch(t) for t in session.scalars(stmt.order_by(column))]

        with self._fresh() as session:
            current = stats(session, start, now, True)
            earlier = stats(session, previous, start, False)
            evaluations = session.execute(
                select(E.created_at, E.is_success)
                .where(_between(E.created_at, start, now, end_inclusive=True))
                .order_by(E.created_at)
            ).all()
            return {
                "current_period": current,
                "previous_period": earlier,
                "interactions_time_series": [
                    {"timestamp": t, "value": 1} for t in series(session, IN.created_at)
                ],
                "profiles_time_series": [
                    {"timestamp": t, "value": 1} for t in series(session, _profile_time())
                ],
                "playbooks_time_series": [
                    {"timestamp": t, "value": 1} for t in series(session, U.created_at)
                ],
                "evaluations_time_series": [
                    {"timestamp": c.to_epoch(t), "value": 100 if ok else 0} for t, ok in evaluations
                ],
            }

    def get_profile_statistics(self) -> dict[Any, Any]:
        now = datetime.now(UTC)
        soon = now + timedelta(days=7)
        P = m.Profile
        live = (P.expires_at.is_(None)) | (P.expires_at >= now)
        stmt = select(P.status, func.count()).where(live).group_by(P.status)
        with self._fresh() as session:
            counts = {getattr(s, "value", s): n for s, n in session.execute(stmt).all()}
            expiring = _count(
                session, P, live & (P.status == StoreStatus.CURRENT) & (P.expires_at <= soon)
            )
        return {
            "current_count": counts.get(StoreStatus.CURRENT.value, 0),
            "pending_count": counts.get(StoreStatus.PENDING.value, 0),
            "archived_count": counts.get(StoreStatus.ARCHIVED.value, 0),
            "expiring_soon_count": expiring,
        }

    # -- change logs -------------------------------------------------------------------------

    def add_profile_change_log(self, profile_change_log: ProfileChangeLog) -> None:
        log = profile_change_log

        def dump(items: list[Any]) -> list[Any]:
            out = [p.model_dump(mode="json") for p in items]
            check_json(out, "profile change log")
            return out

        with self._write() as session:
            session.add(
                PCL(
                    user_id=log.user_id,
                    request_id=log.request_id,
                    created_at=c.to_datetime(log.created_at, "created_at"),
                    added_profiles=dump(log.added_profiles),
                    removed_profiles=dump(log.removed_profiles),
                    mentioned_profiles=dump(log.mentioned_profiles),
                )
            )

    def get_profile_change_logs(self, limit: int = 100) -> list[ProfileChangeLog]:
        stmt = (
            select(PCL).order_by(PCL.created_at.desc(), PCL.id.desc()).limit(require_limit(limit))
        )
        with self._fresh() as session:
            return [c.profile_change_log_out(r) for r in session.scalars(stmt)]

    def delete_profile_change_log_for_user(self, user_id: str) -> None:
        with self._write() as session:
            session.execute(delete(PCL).where(PCL.user_id == user_id))

    def delete_all_profile_change_logs(self) -> None:
        with self._write() as session:
            session.execute(delete(PCL))

    def add_playbook_aggregation_change_log(self, change_log: PlaybookAggregationChangeLog) -> None:
        before, after = c.aggregation_lists_in(change_log)
        check_json([before, after], "playbook aggregation change log")
        with self._write() as session:
            session.add(
                PACL(
                    playbook_name=change_log.playbook_name,
                    agent_version=change_log.agent_version,
                    run_mode=change_log.run_mode,
                    before=before,
                    after=after,
                    created_at=c.to_datetime(change_log.created_at, "created_at"),
                )
            )

    def get_playbook_aggregation_change_logs(
        self,
        playbook_name: str,
        agent_version: str,
        limit: int = 100,
    ) -> list[PlaybookAggregationChangeLog]:
        stmt = (
            select(PACL)
            .where(PACL.playbook_name == playbook_name, PACL.agent_version == agent_version)
            .order_by(PACL.created_at.desc(), PACL.id.desc())
            .limit(require_limit(limit))
        )
        with self._fresh() as session:
            return [c.aggregation_log_out(r) for r in session.scalars(stmt)]

    def delete_all_playbook_aggregation_change_logs(self) -> None:
        with self._write() as session:
            session.execute(delete(PACL))

    # -- misc --------------------------------------------------------------------------------

    def get_interactions_by_request_ids(self, request_ids: list[str]) -> list[Interaction]:
        request_ids = key_list(request_ids, "request_ids")
        if not request_ids:
            return []
        stmt = (
            select(m.Interaction)
            .where(m.Interaction.request_id.in_(request_ids))
            .order_by(m.Interaction.created_at, m.Interaction.interaction_id)
        )
        with self._fresh() as session:
            return [c.interaction_out(r) for r in session.scalars(stmt)]
