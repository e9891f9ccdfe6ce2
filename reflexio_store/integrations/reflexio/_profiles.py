"""Reflexio's ProfileMixin (profiles and interactions, 23 methods) on reflexio_store."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reflexio.models.api_schema.domain import (
    DeleteUserInteractionRequest,
    DeleteUserProfileRequest,
    Interaction,
    Status,
    UserProfile,
)
from reflexio.models.api_schema.retriever_schema import (
    SearchInteractionRequest,
    SearchUserProfileRequest,
)
from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reflexio_store import models as m
from reflexio_store.dialect import dialect_insert, dialect_name
from reflexio_store.integrations.reflexio import convert as c
from reflexio_store.integrations.reflexio._core import (
    AdapterCore,
    as_list,
    key_list,
    one_status,
    require_limit,
    rowcount,
    status_condition,
)
from reflexio_store.integrations.reflexio._search import pick_mode, widened
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    check_json,
    filter_key,
    optional_text,
    require_int,
    require_text,
)

logger = logging.getLogger(__name__)

_CURRENT_ONLY: list[Status | None] = [None]


def _not_expired(now: datetime) -> ColumnElement[bool]:
    return or_(m.Profile.expires_at.is_(None), m.Profile.expires_at >= now)


def _modified() -> Any:
    return func.coalesce(m.Profile.last_modified_at, m.Profile.created_at)


def _profile_values(profile: UserProfile, embedding: list[float] | None) -> dict[str, Any]:
    features = profile.custom_features
    if features is not None:
        check_json(features, "custom_features")
    return {
        "profile_id": require_text(profile.profile_id, "profile_id", max_bytes=MAX_KEY_BYTES),
        "user_id": require_text(profile.user_id, "user_id", max_bytes=MAX_KEY_BYTES),
        "content": require_text(profile.content, "content", allow_empty=True),
        "custom_features": features,
        "extractor_names": list(profile.extractor_names or []),
        "source": filter_key(profile.source, "source"),
        "status": c.store_status(profile.status),
        "generated_from_request_id": filter_key(
            profile.generated_from_request_id, "generated_from_request_id"
        ),
        "profile_time_to_live": profile.profile_time_to_live.value,
        "expires_at": c.to_datetime(profile.expiration_timestamp, "expiration_timestamp"),
        "last_modified_at": c.to_datetime(
            profile.last_modified_timestamp, "last_modified_timestamp"
        ),
        "expanded_terms": optional_text(profile.expanded_terms, "expanded_terms"),
        "embedding": embedding,
    }


@functools.cache
def _profile_upsert_for(dialect: str) -> Any:
    """One upsert statement per dialect, built once (building ON CONFLICT ... excluded costs
    more than running it for a handful of rows)."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(m.Profile)
    replaced = [
        c.name
        for c in m.Profile.__table__.columns
        if c.name not in ("id", "profile_id", "search_vector")
    ]
    # A replaced profile gets every field anew, created_at included (Reflexio's REPLACE).
    return stmt.on_conflict_do_update(
        index_elements=["profile_id"], set_={k: stmt.excluded[k] for k in replaced}
    )


def _profile_upsert(session: Session) -> Any:
    return _profile_upsert_for(session.get_bind().dialect.name)


def _profile_text(profile: UserProfile) -> str:
    """What Reflexio embeds for a profile."""
    return "\n".join([profile.content, str(profile.custom_features)])


def _interaction_text(interaction: Interaction) -> str:
    return "\n".join([interaction.content or "", interaction.user_action_description or ""])


def _interaction_values(item: Interaction, embedding: list[float] | None) -> dict[str, Any]:
    tools = [t.model_dump(mode="json") for t in item.tools_used]
    check_json(tools, "tools_used")
    return {
        "request_id": require_text(item.request_id, "request_id", max_bytes=MAX_KEY_BYTES),
        "user_id": require_text(item.user_id, "user_id", max_bytes=MAX_KEY_BYTES),
        "role": optional_text(item.role, "role"),
        "content": require_text(item.content, "content", allow_empty=True),
        "user_action": item.user_action.value,
        "user_action_description": optional_text(
            item.user_action_description, "user_action_description"
        ),
        "interacted_image_url": optional_text(item.interacted_image_url, "interacted_image_url"),
        "shadow_content": optional_text(item.shadow_content, "shadow_content"),
        "expert_content": optional_text(item.expert_content, "expert_content"),
        "tools_used": tools,
        "embedding": embedding,
        "created_at": c.to_datetime(item.created_at, "created_at"),
    }


MAX_EXPLICIT_ID = 2**62
"""Largest interaction_id a caller may give: the key's sequence moves past a given id, and must
keep room for the ids generated after it (2**63 - 1 would leave none: every later insert fails)."""


def insert_interactions(
    session: Session, items: Sequence[Interaction], embeddings: Sequence[list[float] | None]
) -> list[tuple[Interaction, int]]:
    """Insert (or, for a given interaction_id, replace) interactions in the caller's
    transaction. A request the interactions point at that does not exist yet is created from
    them (Reflexio's own storage has no foreign key there; ours cascades deletes).

    Returns the generated ids, for the caller to set on the items once the transaction has
    committed: an id set earlier would survive a rollback, and SQLite hands a rolled-back id to
    the next insert (the item's retry would then replace another row)."""
    for item in items:
        if item.interaction_id:
            require_int(item.interaction_id, "interaction_id", 1, MAX_EXPLICIT_ID)
    rows = [_interaction_values(i, e) for i, e in zip(items, embeddings, strict=True)]
    parents: dict[str, dict[str, Any]] = {}
    for row in rows:
        parents.setdefault(
            row["request_id"],
            {
                "request_id": row["request_id"],
                "user_id": row["user_id"],
                "source": "",
                "agent_version": "",
                "created_at": row["created_at"],
            },
        )
    if parents:
        stmt = dialect_insert(session, m.Request).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        session.execute(stmt, list(parents.values()))
    explicit = [(item, row) for item, row in zip(items, rows, strict=True) if item.interaction_id]
    generated = [
        (item, row) for item, row in zip(items, rows, strict=True) if not item.interaction_id
    ]
    assigned: list[tuple[Interaction, int]] = []
    if generated:
        ids = session.scalars(
            dialect_insert(session, m.Interaction).returning(
                m.Interaction.interaction_id, sort_by_parameter_order=True
            ),
            [row for _, row in generated],
        ).all()
        assigned = [(item, int(new_id)) for (item, _), new_id in zip(generated, ids, strict=True)]
    for item, row in explicit:
        stmt = dialect_insert(session, m.Interaction).values(
            interaction_id=item.interaction_id, **row
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["interaction_id"], set_={k: stmt.excluded[k] for k in row}
            )
        )
    if explicit and dialect_name(session) == "postgresql":
        # Explicit ids do not advance the key's sequence; move it past them.
        top = session.scalar(select(func.max(m.Interaction.interaction_id)))
        translate = session.get_bind().get_execution_options().get("schema_translate_map") or {}
        schema = translate.get(None) or "public"
        session.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'interaction_id'), :v)"),
            {"t": f'"{schema}".interactions', "v": int(top or 1)},
        )
    return assigned


class ProfilePart(AdapterCore):
    # -- profiles ----------------------------------------------------------------------------

    def get_all_profiles(
        self,
        limit: int = 100,
        status_filter: list[Status | None] | None = None,
    ) -> list[UserProfile]:
        stmt = (
            select(m.Profile)
            .where(
                status_condition(
                    m.Profile.status, _CURRENT_ONLY if status_filter is None else status_filter
                )
            )
            .order_by(_modified().desc(), m.Profile.id)
            .limit(require_limit(limit))
        )
        with self._fresh() as session:
            return [c.profile_out(p) for p in session.scalars(stmt)]

    def get_user_profile(
        self,
        user_id: str,
        status_filter: list[Status | None] | None = None,
    ) -> list[UserProfile]:
        statuses = _CURRENT_ONLY if status_filter is None else status_filter
        stmt = (
            select(m.Profile)
            .where(
                m.Profile.user_id == require_text(user_id, "user_id", max_bytes=MAX_KEY_BYTES),
                _not_expired(datetime.now(UTC)),
                status_condition(m.Profile.status, statuses),
            )
            .order_by(m.Profile.id)
        )
        with self._fresh() as session:
            return [c.profile_out(p) for p in session.scalars(stmt)]

    def add_user_profile(self, user_id: str, user_profiles: list[UserProfile]) -> None:
        """Insert profiles, replacing any with the same profile_id (as Reflexio does)."""
        if not user_profiles:
            return
        vectors = self._vectors([_profile_text(p) for p in user_profiles])
        rows = []
        for profile, vector in zip(user_profiles, vectors, strict=True):
            profile.embedding = as_list(vector)
            rows.append(_profile_values(profile, vector))
        # The last of duplicate ids in one call wins, as with INSERT OR REPLACE one by one.
        by_id = {row["profile_id"]: row for row in rows}
        now = datetime.now(UTC)
        with self._write() as session:
            session.execute(
                _profile_upsert(session), [{**row, "created_at": now} for row in by_id.values()]
            )

    def update_user_profile_by_id(
        self, user_id: str, profile_id: str, new_profile: UserProfile
    ) -> None:
        with self._fresh() as session:
            found = session.execute(
                select(m.Profile.id).where(
                    m.Profile.user_id == user_id,
                    m.Profile.profile_id == profile_id,
                    _not_expired(datetime.now(UTC)),
                )
            ).first()
        if found is None:
            logger.warning("User profile not found for user id: %s", user_id)
            return
        (vector,) = self._vectors([_profile_text(new_profile)])
        new_profile.embedding = as_list(vector)
        values = _profile_values(new_profile, vector)
        values.pop("profile_id")
        values.pop("user_id")
        with self._write() as session:
            session.execute(
                update(m.Profile).where(m.Profile.profile_id == profile_id).values(**values)
            )

    def delete_user_profile(self, request: DeleteUserProfileRequest) -> None:
        with self._write() as session:
            session.execute(
                delete(m.Profile).where(
                    m.Profile.user_id == request.user_id,
                    m.Profile.profile_id == request.profile_id,
                )
            )

    def delete_all_profiles_for_user(self, user_id: str) -> None:
        with self._write() as session:
            session.execute(delete(m.Profile).where(m.Profile.user_id == user_id))

    def delete_all_profiles(self) -> None:
        with self._write() as session:
            session.execute(delete(m.Profile))

    def count_all_profiles(self) -> int:
        with self._fresh() as session:
            return int(session.scalar(select(func.count()).select_from(m.Profile)) or 0)

    def update_all_profiles_status(
        self,
        old_status: Status | None,
        new_status: Status | None,
        user_ids: list[str] | None = None,
    ) -> int:
        if user_ids is not None:
            user_ids = key_list(user_ids, "user_ids")
            if not user_ids:
                return 0
        stmt = (
            update(m.Profile)
            .where(one_status(m.Profile.status, old_status))
            .values(status=c.store_status(new_status), last_modified_at=datetime.now(UTC))
        )
        if user_ids is not None:
            stmt = stmt.where(m.Profile.user_id.in_(user_ids))
        with self._write() as session:
            return rowcount(session.execute(stmt))

    def delete_all_profiles_by_status(self, status: Status) -> int:
        with self._write() as session:
            return rowcount(
                session.execute(delete(m.Profile).where(one_status(m.Profile.status, status)))
            )

    def get_user_ids_with_status(self, status: Status | None) -> list[str]:
        stmt = (
            select(m.Profile.user_id)
            .where(one_status(m.Profile.status, status))
            .group_by(m.Profile.user_id)
            .order_by(func.min(m.Profile.id))
        )
        with self._fresh() as session:
            return list(session.scalars(stmt))

    def delete_profiles_by_ids(self, profile_ids: list[str]) -> int:
        profile_ids = key_list(profile_ids, "profile_ids")
        if not profile_ids:
            return 0
        with self._write() as session:
            return rowcount(
                session.execute(delete(m.Profile).where(m.Profile.profile_id.in_(profile_ids)))
            )

    # -- interactions ------------------------------------------------------------------------

    def get_all_interactions(self, limit: int = 100) -> list[Interaction]:
        stmt = (
            select(m.Interaction)
            .order_by(m.Interaction.created_at.desc(), m.Interaction.interaction_id.desc())
            .limit(require_limit(limit))
        )
        with self._fresh() as session:
            return [c.interaction_out(i) for i in session.scalars(stmt)]

    def get_user_interaction(self, user_id: str) -> list[Interaction]:
        stmt = (
            select(m.Interaction)
            .where(m.Interaction.user_id == user_id)
            .order_by(m.Interaction.interaction_id)
        )
        with self._fresh() as session:
            return [c.interaction_out(i) for i in session.scalars(stmt)]

    def add_user_interaction(self, user_id: str, interaction: Interaction) -> None:
        self.add_user_interactions_bulk(user_id, [interaction])

    def add_user_interactions_bulk(self, user_id: str, interactions: list[Interaction]) -> None:
        """All interactions in one transaction, embedded in one embedder call."""
        if not interactions:
            return
        vectors = self._vectors([_interaction_text(i) for i in interactions])
        for item, vector in zip(interactions, vectors, strict=True):
            item.embedding = as_list(vector)
        with self._write() as session:
            assigned = insert_interactions(session, interactions, vectors)
        for item, new_id in assigned:  # committed: only now are the ids theirs
            item.interaction_id = new_id

    def delete_user_interaction(self, request: DeleteUserInteractionRequest) -> None:
        with self._write() as session:
            session.execute(
                delete(m.Interaction).where(
                    m.Interaction.user_id == request.user_id,
                    m.Interaction.interaction_id == request.interaction_id,
                )
            )

    def delete_all_interactions_for_user(self, user_id: str) -> None:
        with self._write() as session:
            session.execute(delete(m.Interaction).where(m.Interaction.user_id == user_id))

    def delete_all_interactions(self) -> None:
        with self._write() as session:
            session.execute(delete(m.Interaction))

    def count_all_interactions(self) -> int:
        with self._fresh() as session:
            return int(session.scalar(select(func.count()).select_from(m.Interaction)) or 0)

    def delete_oldest_interactions(self, count: int) -> int:
        if count <= 0:
            return 0
        oldest = (
            select(m.Interaction.interaction_id)
            .order_by(m.Interaction.created_at, m.Interaction.interaction_id)
            .limit(count)
            .scalar_subquery()
        )
        with self._write() as session:
            return rowcount(
                session.execute(
                    delete(m.Interaction).where(m.Interaction.interaction_id.in_(oldest))
                )
            )

    # -- search ------------------------------------------------------------------------------

    def search_interaction(
        self,
        search_interaction_request: SearchInteractionRequest,
        query_embedding: list[float] | None = None,
    ) -> list[Interaction]:
        req = search_interaction_request
        match_count = req.most_recent_k or 10
        mode = pick_mode(req.search_mode, req.query, query_embedding, interactions=True)
        after = req.start_time
        before = req.end_time
        if mode is None:
            if not req.most_recent_k:
                return []
            stmt = (
                select(m.Interaction)
                .where(m.Interaction.user_id == req.user_id)
                .order_by(m.Interaction.created_at.desc(), m.Interaction.interaction_id.desc())
                .limit(req.most_recent_k)
            )
            if req.request_id:
                stmt = stmt.where(m.Interaction.request_id == req.request_id)
            if after is not None:
                stmt = stmt.where(m.Interaction.created_at >= _aware(after))
            if before is not None:
                stmt = stmt.where(m.Interaction.created_at <= _aware(before))
            with self._fresh() as session:
                rows = list(session.scalars(stmt))
            return [c.interaction_out(r) for r in reversed(rows)]
        hits = self.store.search_interactions(
            req.query if mode != "vector" else None,
            embedding=query_embedding if mode != "text" else None,
            mode=mode,
            top_k=match_count,
            user_id=req.user_id,
            request_id=req.request_id or None,
            created_after=_aware(after) if after else None,
            created_before=_inclusive_end(before) if before else None,
        )
        interactions = [c.interaction_out(h.item) for h in hits]
        if req.most_recent_k:
            newest = sorted(interactions, key=lambda i: i.created_at, reverse=True)
            return list(reversed(newest[: req.most_recent_k]))
        return interactions

    def search_user_profile(
        self,
        search_user_profile_request: SearchUserProfileRequest,
        status_filter: list[Status | None] | None = None,
        query_embedding: list[float] | None = None,
    ) -> list[UserProfile]:
        req = search_user_profile_request
        statuses = _CURRENT_ONLY if status_filter is None else status_filter
        match_count = req.top_k or 10
        mode = pick_mode(req.search_mode, req.query, query_embedding)

        def keep(p: UserProfile) -> bool:
            # Filters the store's search has no parameter for, applied to a widened result.
            if req.source and (p.source or "").lower() != req.source.lower():
                return False
            if req.generated_from_request_id and (
                p.generated_from_request_id != req.generated_from_request_id
            ):
                return False
            if req.start_time and p.last_modified_timestamp < int(req.start_time.timestamp()):
                return False
            if req.end_time and p.last_modified_timestamp > int(req.end_time.timestamp()):
                return False
            return not (
                req.custom_feature
                and req.custom_feature.lower() not in str(p.custom_features).lower()
            )

        if mode is None:
            return self._list_profiles(req, statuses, match_count, keep)
        post = bool(
            req.source
            or req.generated_from_request_id
            or req.start_time
            or req.end_time
            or req.custom_feature
        )
        wanted = c.store_statuses(statuses)
        # One status is passed as such: the store's (user_id, status) index serves it directly.
        store_statuses: Any = wanted[0] if len(wanted) == 1 else (wanted or None)
        hits = self.store.search_profiles(
            req.query if mode != "vector" else None,
            embedding=query_embedding if mode != "text" else None,
            mode=mode,
            top_k=widened(match_count) if post else match_count,
            threshold=req.threshold if req.threshold is not None else 0.4,
            user_id=req.user_id,
            status=store_statuses,
            extractor_name=req.extractor_name or None,
        )
        profiles = [c.profile_out(h.item) for h in hits]
        return [p for p in profiles if keep(p)][:match_count]

    def _list_profiles(
        self,
        req: SearchUserProfileRequest,
        statuses: list[Status | None],
        match_count: int,
        keep: Any,
    ) -> list[UserProfile]:
        """No query and no embedding: the user's most recently modified profiles."""
        stmt = (
            select(m.Profile)
            .where(
                m.Profile.user_id == req.user_id,
                _not_expired(datetime.now(UTC)),
                status_condition(m.Profile.status, statuses),
            )
            .order_by(_modified().desc(), m.Profile.id)
        )
        if req.generated_from_request_id:
            stmt = stmt.where(m.Profile.generated_from_request_id == req.generated_from_request_id)
        # The source is compared here, as in the other modes: SQLite's lower() folds ASCII only,
        # so "CAFÉ" and "café" would match on PostgreSQL alone.
        source = req.source.lower() if req.source else None
        out: list[UserProfile] = []
        with self._fresh_transaction() as session:
            for row in session.scalars(stmt.execution_options(yield_per=200)):
                profile = c.profile_out(row)
                if req.extractor_name and req.extractor_name not in (profile.extractor_names or []):
                    continue
                if source is not None and (profile.source or "").lower() != source:
                    continue
                if keep(profile):
                    out.append(profile)
                if len(out) >= match_count:
                    break
        return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _inclusive_end(value: datetime) -> datetime:
    """Reflexio's end_time is inclusive; the store's created_before is exclusive."""
    try:
        return _aware(value) + timedelta(microseconds=1)
    except OverflowError:
        return _aware(value)  # datetime.max: nothing is later anyway
