"""Rows of reflexio_store <-> Reflexio's own pydantic models.

Reflexio speaks integer epoch seconds, NULL for the current status, empty strings for unset text
and one `structured_data` object per playbook; reflexio_store keeps aware datetimes, a `current`
status, NULLs, and trigger / rationale / blocking_issue in their own (searched) columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from reflexio.models.api_schema.common import NEVER_EXPIRES_TIMESTAMP
from reflexio.models.api_schema.domain import (
    AgentPlaybook,
    AgentPlaybookSnapshot,
    AgentPlaybookUpdateEntry,
    AgentSuccessEvaluationResult,
    Interaction,
    PlaybookAggregationChangeLog,
    PlaybookStatus,
    ProfileChangeLog,
    ProfileTimeToLive,
    RegularVsShadow,
    Request,
    Status,
    StructuredData,
    ToolUsed,
    UserActionType,
    UserPlaybook,
    UserProfile,
)

from reflexio_store import models as m
from reflexio_store.enums import PlaybookReviewStatus
from reflexio_store.enums import Status as StoreStatus
from reflexio_store.errors import ValidationError

# Column-backed keys of Reflexio's StructuredData; everything else goes to the JSON column.
_COLUMN_KEYS = ("trigger", "rationale", "blocking_issue")


# -- time -------------------------------------------------------------------------------------


def to_datetime(epoch: Any, field: str) -> datetime:
    """Reflexio's integer epoch seconds as an aware UTC datetime."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
        raise ValidationError(f"{field} must be epoch seconds (a number), got {epoch!r}.")
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(f"{field} {epoch!r} is not a representable time.") from None


def optional_datetime(epoch: Any, field: str) -> datetime | None:
    return None if epoch is None else to_datetime(epoch, field)


def to_epoch(value: datetime) -> int:
    return int(value.timestamp())


# -- status -----------------------------------------------------------------------------------


def store_status(status: Any) -> StoreStatus:
    """Reflexio's NULL / Status.CURRENT means current (Status.CURRENT's value is the text
    'None')."""
    value = getattr(status, "value", status)
    return StoreStatus.CURRENT if value is None or value == "None" else StoreStatus(value)


def store_statuses(status_filter: Sequence[Any]) -> list[StoreStatus]:
    return list(dict.fromkeys(store_status(s) for s in status_filter))


def reflexio_status(status: StoreStatus | str | None) -> Status | None:
    value = getattr(status, "value", status)
    if value is None or value == StoreStatus.CURRENT.value:
        return None
    try:
        return Status(value)
    except ValueError:
        # merged / superseded rows (written by other tools) are no longer in use: Reflexio has
        # no name for that, and archived is what it means by "no longer in use".
        return Status.ARCHIVED


# -- structured data --------------------------------------------------------------------------


def split_structured(data: StructuredData) -> dict[str, Any]:
    """trigger / rationale / blocking_issue columns, and the rest as `structured_data`."""
    dumped = data.model_dump(mode="json", exclude_none=True)
    rest = {k: v for k, v in dumped.items() if k not in _COLUMN_KEYS}
    return {
        "trigger": dumped.get("trigger"),
        "rationale": dumped.get("rationale"),
        "blocking_issue": dumped.get("blocking_issue"),
        "structured_data": rest or None,
    }


def join_structured(row: m.UserPlaybook | m.AgentPlaybook) -> StructuredData:
    data: dict[str, Any] = dict(row.structured_data or {})
    for key in _COLUMN_KEYS:
        value = getattr(row, key)
        if value is not None:
            data[key] = value
    return StructuredData(**data)


def playbook_embedding_text(content: str, data: StructuredData) -> str:
    """What Reflexio embeds for a playbook."""
    return data.embedding_text or data.trigger or content


# -- rows -> Reflexio models --------------------------------------------------------------------


def profile_out(row: m.Profile) -> UserProfile:
    modified = row.last_modified_at or row.created_at
    try:
        ttl = ProfileTimeToLive(row.profile_time_to_live or ProfileTimeToLive.INFINITY.value)
    except ValueError:
        ttl = ProfileTimeToLive.INFINITY
    return UserProfile(
        profile_id=row.profile_id,
        user_id=row.user_id,
        content=row.content,
        last_modified_timestamp=to_epoch(modified),
        generated_from_request_id=row.generated_from_request_id or "",
        profile_time_to_live=ttl,
        expiration_timestamp=(
            to_epoch(row.expires_at) if row.expires_at is not None else NEVER_EXPIRES_TIMESTAMP
        ),
        custom_features=row.custom_features,
        source=row.source or "",
        status=reflexio_status(row.status),
        extractor_names=list(row.extractor_names) or None,
        expanded_terms=row.expanded_terms,
    )


def interaction_out(row: m.Interaction) -> Interaction:
    try:
        action = UserActionType(row.user_action or UserActionType.NONE.value)
    except ValueError:
        action = UserActionType.NONE
    return Interaction(
        interaction_id=row.interaction_id,
        user_id=row.user_id,
        request_id=row.request_id,
        created_at=to_epoch(row.created_at),
        role=row.role or "User",
        content=row.content,
        user_action=action,
        user_action_description=row.user_action_description or "",
        interacted_image_url=row.interacted_image_url or "",
        shadow_content=row.shadow_content or "",
        expert_content=row.expert_content or "",
        tools_used=[ToolUsed(**t) for t in row.tools_used or [] if isinstance(t, dict)],
    )


def request_out(row: m.Request) -> Request:
    return Request(
        request_id=row.request_id,
        user_id=row.user_id,
        created_at=to_epoch(row.created_at),
        source=row.source or "",
        agent_version=row.agent_version or "",
        session_id=row.session_id,
    )


def user_playbook_out(row: m.UserPlaybook, *, include_embedding: bool = False) -> UserPlaybook:
    embedding = [float(x) for x in row.embedding] if include_embedding and row.embedding else []
    return UserPlaybook(
        user_playbook_id=row.user_playbook_id,
        user_id=row.user_id,
        playbook_name=row.playbook_name,
        created_at=to_epoch(row.created_at),
        request_id=row.request_id or "",
        agent_version=row.agent_version or "",
        content=row.content,
        structured_data=join_structured(row),
        status=reflexio_status(row.status),
        source=row.source,
        source_interaction_ids=list(row.source_interaction_ids or []),
        embedding=embedding,
        expanded_terms=row.expanded_terms,
    )


def metadata_in(text: str) -> dict[str, Any] | None:
    """Reflexio's playbook_metadata is free text; the column is a JSON object."""
    return {"text": text} if text else None


def metadata_out(value: dict[str, Any] | None) -> str:
    if not value:
        return ""
    text = value.get("text")
    return text if isinstance(text, str) and len(value) == 1 else json.dumps(value, sort_keys=True)


def agent_playbook_out(row: m.AgentPlaybook) -> AgentPlaybook:
    return AgentPlaybook(
        agent_playbook_id=row.agent_playbook_id,
        playbook_name=row.playbook_name,
        created_at=to_epoch(row.created_at),
        agent_version=row.agent_version or "",
        content=row.content,
        structured_data=join_structured(row),
        playbook_status=PlaybookStatus(getattr(row.playbook_status, "value", row.playbook_status)),
        playbook_metadata=metadata_out(row.playbook_metadata),
        embedding=[],
        status=reflexio_status(row.status),
        expanded_terms=row.expanded_terms,
    )


def review_status(value: PlaybookStatus | str) -> PlaybookReviewStatus:
    return PlaybookReviewStatus(getattr(value, "value", value))


def evaluation_out(row: m.AgentSuccessEvaluationResult) -> AgentSuccessEvaluationResult:
    return AgentSuccessEvaluationResult(
        result_id=row.id,
        session_id=row.session_id,
        agent_version=row.agent_version or "",
        evaluation_name=row.evaluation_name or None,
        is_success=bool(row.is_success),
        failure_type=row.failure_type,
        failure_reason=row.failure_reason,
        created_at=to_epoch(row.created_at),
        regular_vs_shadow=(
            RegularVsShadow(row.regular_vs_shadow) if row.regular_vs_shadow else None
        ),
        number_of_correction_per_session=row.number_of_correction_per_session or 0,
        user_turns_to_resolution=row.user_turns_to_resolution,
        is_escalated=bool(row.is_escalated),
        embedding=[],
    )


def profile_change_log_out(row: m.ProfileChangeLog) -> ProfileChangeLog:
    return ProfileChangeLog(
        id=row.id,
        user_id=row.user_id or "",
        request_id=row.request_id or "",
        created_at=to_epoch(row.created_at),
        added_profiles=[UserProfile(**p) for p in row.added_profiles or []],
        removed_profiles=[UserProfile(**p) for p in row.removed_profiles or []],
        mentioned_profiles=[UserProfile(**p) for p in row.mentioned_profiles or []],
    )


# An aggregation change log keeps the agent playbooks as they were before the run and as they
# are after it; each snapshot is tagged with what the run did to it, so Reflexio's three lists
# (added, removed, updated before/after) come back exactly.
_CHANGE = "change"


def aggregation_lists_in(log: PlaybookAggregationChangeLog) -> tuple[list[Any], list[Any]]:
    def tagged(snapshot: AgentPlaybookSnapshot, change: str) -> dict[str, Any]:
        return {**snapshot.model_dump(mode="json"), _CHANGE: change}

    before = [tagged(s, "removed") for s in log.removed_agent_playbooks]
    before += [tagged(u.before, "updated") for u in log.updated_agent_playbooks]
    after = [tagged(s, "added") for s in log.added_agent_playbooks]
    after += [tagged(u.after, "updated") for u in log.updated_agent_playbooks]
    return before, after


def aggregation_log_out(row: m.PlaybookAggregationChangeLog) -> PlaybookAggregationChangeLog:
    def snapshots(items: list[Any], change: str, untagged: str) -> list[AgentPlaybookSnapshot]:
        return [
            AgentPlaybookSnapshot(**{k: v for k, v in item.items() if k != _CHANGE})
            for item in items
            if isinstance(item, dict) and item.get(_CHANGE, untagged) == change
        ]

    before, after = row.before or [], row.after or []
    befores = snapshots(before, "updated", "removed")
    afters = snapshots(after, "updated", "added")
    return PlaybookAggregationChangeLog(
        id=row.id,
        created_at=to_epoch(row.created_at),
        playbook_name=row.playbook_name or "",
        agent_version=row.agent_version or "",
        run_mode=row.run_mode or "incremental",
        added_agent_playbooks=snapshots(after, "added", "added"),
        removed_agent_playbooks=snapshots(before, "removed", "removed"),
        updated_agent_playbooks=[
            AgentPlaybookUpdateEntry(before=b, after=a)
            for b, a in zip(befores, afters, strict=False)
        ],
    )
