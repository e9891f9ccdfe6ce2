"""A Reflexio SQLite database written by Reflexio's own SQLiteStorage, for the import test.

Run in a subprocess whose sys.path starts with the patched reflexio-ai copy (see
reflexio_reference.py):  python -m tests.support.reflexio_import_source DB_PATH
Writes every entity through Reflexio's API, then prints one JSON line: what Reflexio itself reads
back through the methods the import test asks ReflexioStoreStorage for.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from reflexio.models.api_schema.domain import (
    AgentPlaybook,
    AgentPlaybookSnapshot,
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

from tests.support.reflexio_differential import reference

MARKER = "IMPORT-SOURCE "
T0 = 1_760_000_000


def build(path: str) -> dict[str, Any]:
    ref = reference(path)
    for i, (user, session) in enumerate([("u1", "s1"), ("u1", "s2"), ("u2", "s3")]):
        ref.add_request(
            Request(
                request_id=f"r{i}",
                user_id=user,
                created_at=T0 + i,
                source="chat",
                agent_version="v1",
                session_id=session,
            )
        )
        ref.add_user_interactions_bulk(
            user,
            [
                Interaction(
                    user_id=user,
                    request_id=f"r{i}",
                    created_at=T0 + i,
                    role="User",
                    content=f"message {i}: I prefer dark mode and the Europe/Berlin timezone",
                    user_action=UserActionType.CLICK if i == 1 else UserActionType.NONE,
                    user_action_description="clicked settings" if i == 1 else "",
                    tools_used=[ToolUsed(tool_name="search", tool_data={"q": "dark"})],
                ),
                Interaction(
                    user_id=user,
                    request_id=f"r{i}",
                    created_at=T0 + i,
                    role="Assistant",
                    content=f"reply {i}: switched to dark mode",
                ),
            ],
        )
    # An interaction whose request Reflexio never stored (it has no foreign key).
    ref.add_user_interactions_bulk(
        "u3", [Interaction(user_id="u3", request_id="gone", created_at=T0, content="orphan")]
    )
    for user in ("u1", "u2"):
        ref.add_user_profile(
            user,
            [
                UserProfile(
                    profile_id=f"{user}-p{k}",
                    user_id=user,
                    content=f"{user} likes {topic}",
                    last_modified_timestamp=T0 + k,
                    generated_from_request_id="r0",
                    profile_time_to_live=ProfileTimeToLive.ONE_MONTH,
                    expiration_timestamp=4_000_000_000 + k,
                    custom_features={"rank": k},
                    source="extractor",
                    status=status,
                    extractor_names=["prefs"],
                )
                for k, (topic, status) in enumerate(
                    [("dark mode", None), ("tea", Status.PENDING), ("rust", Status.ARCHIVED)]
                )
            ],
        )
    ref.save_user_playbooks(
        [
            UserPlaybook(
                user_id="u1",
                playbook_name="tone",
                created_at=T0 + k,
                request_id="r0",
                agent_version="v1",
                content=f"be brief {k}",
                structured_data=StructuredData(
                    trigger="user asks for detail", rationale="they said so", instruction="cut"
                ),
                status=None if k == 0 else Status.PENDING,
                source="fast",
                source_interaction_ids=[1, 2],
            )
            for k in range(2)
        ]
    )
    ref.save_agent_playbooks(
        [
            AgentPlaybook(
                playbook_name="tone",
                created_at=T0,
                agent_version="v1",
                content="keep answers short",
                structured_data=StructuredData(trigger="long answers", pitfall="rambling"),
                playbook_status=PlaybookStatus.APPROVED,
                playbook_metadata="reviewed by ops",
            )
        ]
    )
    ref.save_agent_success_evaluation_results(
        [
            AgentSuccessEvaluationResult(
                session_id="s1",
                agent_version="v1",
                evaluation_name="helpful",
                is_success=k == 1,
                failure_type="none" if k else "slow",
                failure_reason="took too long",
                created_at=T0 + k,
                regular_vs_shadow=RegularVsShadow.REGULAR_IS_BETTER,
                number_of_correction_per_session=k,
                user_turns_to_resolution=3,
                is_escalated=False,
            )
            for k in range(2)  # the same session and name twice: Reflexio appends
        ]
    )
    snapshot = AgentPlaybookSnapshot(agent_playbook_id=1, content="keep answers short")
    ref.add_profile_change_log(
        ProfileChangeLog(
            id=0,
            user_id="u1",
            request_id="r0",
            created_at=T0,
            added_profiles=[ref.get_user_profile("u1")[0]],
            removed_profiles=[],
            mentioned_profiles=ref.get_user_profile("u2"),
        )
    )
    ref.add_playbook_aggregation_change_log(
        PlaybookAggregationChangeLog(
            created_at=T0,
            playbook_name="tone",
            agent_version="v1",
            run_mode="incremental",
            added_agent_playbooks=[snapshot],
        )
    )
    ref.upsert_operation_state("generation::u1", {"last_request": "r2", "count": 3})

    every = [None, Status.PENDING, Status.ARCHIVED]
    return {
        "profiles": ref.get_all_profiles(limit=100, status_filter=every),
        "interactions": ref.get_all_interactions(limit=100),
        "user_playbooks": ref.get_user_playbooks(limit=100, status_filter=every),
        "agent_playbooks": ref.get_agent_playbooks(limit=100),
        "profile_change_logs": ref.get_profile_change_logs(),
        "aggregation_logs": ref.get_playbook_aggregation_change_logs("tone", "v1"),
        "operation_state": ref.get_operation_state("generation::u1"),
        "requests": [ref.get_request(f"r{i}") for i in range(3)],
    }


def dump(value: Any) -> Any:
    if isinstance(value, list):
        return [dump(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


if __name__ == "__main__":
    result = build(sys.argv[1])
    print(MARKER + json.dumps({k: dump(v) for k, v in result.items()}))
