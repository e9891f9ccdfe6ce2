"""Text, vector and hybrid search over profiles, interactions, user and agent playbooks, and
vector search over evaluation results. Every search runs on the reader (the replica when one is
configured) unless called with consistency="strong". See reflexio_store.search.engine for how
each branch runs on SQLite and PostgreSQL.

Modes: "text", "vector", "hybrid" (reciprocal rank fusion, k=60). With mode=None the mode
follows the arguments: hybrid when both a query and an embedding are given, else the one given.
Filters are applied inside SQL, before ranking and the limit. `status` defaults to current rows
only; pass a list of statuses, or None for any status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from numpy.typing import NDArray
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.enums import Status
from reflexio_store.models import (
    AgentPlaybook,
    AgentSuccessEvaluationResult,
    Interaction,
    Profile,
    UserPlaybook,
)
from reflexio_store.search import filters as f
from reflexio_store.search.engine import (
    DEFAULT_EF_SEARCH,
    build_request,
    run_search,
)
from reflexio_store.search.request import EntitySpec, SearchHit, SearchMode
from reflexio_store.store._operation import read
from reflexio_store.validation import optional_bool, require_bool

EmbeddingInput = Sequence[float] | NDArray[Any] | None

PROFILE_THRESHOLD = 0.4
PLAYBOOK_THRESHOLD = 0.4
INTERACTION_THRESHOLD = 0.1
EVALUATION_THRESHOLD = 0.4

PROFILES = EntitySpec(Profile, "id")
INTERACTIONS = EntitySpec(Interaction, "interaction_id")
USER_PLAYBOOKS = EntitySpec(UserPlaybook, "user_playbook_id")
AGENT_PLAYBOOKS = EntitySpec(AgentPlaybook, "agent_playbook_id")
EVALUATION_RESULTS = EntitySpec(AgentSuccessEvaluationResult, "id", fulltext=False)


def _search(
    session: Session,
    spec: EntitySpec,
    conditions: list[ColumnElement[bool]],
    *,
    query: str | None,
    embedding: EmbeddingInput,
    mode: SearchMode | None,
    top_k: int,
    threshold: float,
    text_weight: float,
    vector_weight: float,
    ef_search: int,
    include_embedding: bool,
    narrow: list[ColumnElement[bool]] | None = None,
) -> list[SearchHit[Any]]:
    request = build_request(
        session,
        query=query,
        embedding=embedding,
        mode=mode,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=include_embedding,
        fulltext=spec.fulltext,
    )
    return run_search(session, spec, request, conditions, narrow=narrow or ())


def search_profiles(
    session: Session,
    query: str | None = None,
    *,
    embedding: EmbeddingInput = None,
    mode: SearchMode | None = None,
    top_k: int = 10,
    threshold: float = PROFILE_THRESHOLD,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    user_id: str | Sequence[str] | None = None,
    status: f.StatusFilter = Status.CURRENT,
    source: str | Sequence[str] | None = None,
    extractor_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    include_expired: bool = False,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_embedding: bool = False,
) -> list[SearchHit[Profile]]:
    """Search user profiles by text, vector or both.

    extractor_name / tags: the row's JSON list must contain every value given. Expired profiles
    (expires_at in the past) are left out unless include_expired. created_after is inclusive,
    created_before exclusive.
    """
    t = Profile.__table__.c

    # (user_id, status) is served by the (user_id, status, created_at) index.
    narrow = [*f.equals(t.user_id, user_id, "user_id"), *f.status_in(t.status, status)]
    conditions = [
        *narrow,
        *f.equals(t.source, source, "source"),
        *f.contains_all(t.extractor_names, extractor_name, "extractor_name"),
        *f.contains_all(t.tags, tags, "tags"),
        *f.created_between(t.created_at, created_after, created_before),
        *([] if require_bool(include_expired, "include_expired") else f.not_expired(t.expires_at)),
    ]
    return _search(
        session,
        PROFILES,
        conditions,
        narrow=narrow if user_id is not None else None,
        query=query,
        embedding=embedding,
        mode=mode,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=include_embedding,
    )


def search_interactions(
    session: Session,
    query: str | None = None,
    *,
    embedding: EmbeddingInput = None,
    mode: SearchMode | None = None,
    top_k: int = 10,
    threshold: float = INTERACTION_THRESHOLD,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    user_id: str | Sequence[str] | None = None,
    request_id: str | Sequence[str] | None = None,
    role: str | Sequence[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_embedding: bool = False,
) -> list[SearchHit[Interaction]]:
    """Search interactions (their content) by text, vector or both."""
    t = Interaction.__table__.c
    # Each served by an index: (user_id, created_at) and (request_id).
    narrow = [
        *f.equals(t.user_id, user_id, "user_id"),
        *f.equals(t.request_id, request_id, "request_id"),
    ]
    conditions = [
        *narrow,
        *f.equals(t.role, role, "role"),
        *f.created_between(t.created_at, created_after, created_before),
    ]
    return _search(
        session,
        INTERACTIONS,
        conditions,
        narrow=narrow,
        query=query,
        embedding=embedding,
        mode=mode,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=include_embedding,
    )


def search_user_playbooks(
    session: Session,
    query: str | None = None,
    *,
    embedding: EmbeddingInput = None,
    mode: SearchMode | None = None,
    top_k: int = 10,
    threshold: float = PLAYBOOK_THRESHOLD,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    user_id: str | Sequence[str] | None = None,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    status: f.StatusFilter = Status.CURRENT,
    source: str | Sequence[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_embedding: bool = False,
) -> list[SearchHit[UserPlaybook]]:
    """Search user playbooks (content, trigger, expanded terms) by text, vector or both."""
    t = UserPlaybook.__table__.c
    # (user_id, status) is served by the (user_id, status, created_at) index.
    narrow = [*f.equals(t.user_id, user_id, "user_id"), *f.status_in(t.status, status)]
    conditions = [
        *narrow,
        *f.equals(t.playbook_name, playbook_name, "playbook_name"),
        *f.equals(t.agent_version, agent_version, "agent_version"),
        *f.equals(t.source, source, "source"),
        *f.created_between(t.created_at, created_after, created_before),
    ]
    return _search(
        session,
        USER_PLAYBOOKS,
        conditions,
        narrow=narrow if user_id is not None else None,
        query=query,
        embedding=embedding,
        mode=mode,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=include_embedding,
    )


def search_agent_playbooks(
    session: Session,
    query: str | None = None,
    *,
    embedding: EmbeddingInput = None,
    mode: SearchMode | None = None,
    top_k: int = 10,
    threshold: float = PLAYBOOK_THRESHOLD,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    playbook_name: str | Sequence[str] | None = None,
    agent_version: str | Sequence[str] | None = None,
    playbook_status: f.ReviewStatusFilter = None,
    status: f.StatusFilter = Status.CURRENT,
    source: str | Sequence[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_embedding: bool = False,
) -> list[SearchHit[AgentPlaybook]]:
    """Search agent playbooks by text, vector or both. playbook_status is the review status
    (pending / approved / rejected; None for any); status is the lifecycle status."""
    t = AgentPlaybook.__table__.c
    # Served by the (playbook_name, agent_version) index.
    narrow = [
        *f.equals(t.playbook_name, playbook_name, "playbook_name"),
        *f.equals(t.agent_version, agent_version, "agent_version"),
    ]
    conditions = [
        *narrow,
        *f.review_status_in(t.playbook_status, playbook_status),
        *f.status_in(t.status, status),
        *f.equals(t.source, source, "source"),
        *f.created_between(t.created_at, created_after, created_before),
    ]
    return _search(
        session,
        AGENT_PLAYBOOKS,
        conditions,
        narrow=narrow if playbook_name is not None else None,
        query=query,
        embedding=embedding,
        mode=mode,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=include_embedding,
    )


def search_evaluation_results(
    session: Session,
    embedding: EmbeddingInput,
    *,
    top_k: int = 10,
    threshold: float = EVALUATION_THRESHOLD,
    agent_version: str | Sequence[str] | None = None,
    evaluation_name: str | Sequence[str] | None = None,
    session_id: str | Sequence[str] | None = None,
    is_success: bool | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_embedding: bool = False,
) -> list[SearchHit[AgentSuccessEvaluationResult]]:
    """Vector search over agent success evaluation results (they have no full-text index)."""
    is_success = optional_bool(is_success, "is_success")
    t = AgentSuccessEvaluationResult.__table__.c
    conditions = [
        *f.equals(t.agent_version, agent_version, "agent_version"),
        *f.equals(t.evaluation_name, evaluation_name, "evaluation_name"),
        *f.equals(t.session_id, session_id, "session_id"),
        *([] if is_success is None else [t.is_success.is_(is_success)]),
        *f.created_between(t.created_at, created_after, created_before),
    ]
    return _search(
        session,
        EVALUATION_RESULTS,
        conditions,
        query=None,
        embedding=embedding,
        mode="vector",
        top_k=top_k,
        threshold=threshold,
        text_weight=1.0,
        vector_weight=1.0,
        ef_search=ef_search,
        include_embedding=include_embedding,
    )


class SearchOperations:
    """Search operations: each runs on the reader unless consistency="strong"."""

    search_profiles = read(search_profiles)
    search_interactions = read(search_interactions)
    search_user_playbooks = read(search_user_playbooks)
    search_agent_playbooks = read(search_agent_playbooks)
    search_evaluation_results = read(search_evaluation_results)
