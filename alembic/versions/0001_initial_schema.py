"""initial schema: every Reflexio table, full-text and vector indexes on both databases

PostgreSQL: the pgvector extension (checked by env.py), vector(N) embeddings with HNSW cosine
indexes, generated tsvector columns with GIN indexes, GIN on workflow_runs.metadata.
SQLite: embeddings as float32 blobs (read by sqlite-vec), FTS5 tables (porter tokenizer) kept in
step with their base rows by triggers, so a row and its search entry commit together.

N is REFLEXIO_EMBEDDING_DIMENSIONS at the time of this migration (default 512), passed by env.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

from alembic import context, op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The searched text of each table: FTS5 columns on SQLite, the tsvector source on PostgreSQL.
FULLTEXT: dict[str, tuple[str, ...]] = {
    "interactions": ("content",),
    "profiles": ("content", "expanded_terms"),
    "user_playbooks": ("content", "trigger", "expanded_terms"),
    "agent_playbooks": ("content", "trigger", "expanded_terms"),
}
ROWID: dict[str, str] = {
    "interactions": "interaction_id",
    "profiles": "id",
    "user_playbooks": "user_playbook_id",
    "agent_playbooks": "agent_playbook_id",
}
EMBEDDED = (
    "interactions",
    "profiles",
    "user_playbooks",
    "agent_playbooks",
    "agent_success_evaluation_results",
)


def _is_pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _dimensions() -> int:
    return int(context.config.attributes.get("embedding_dimensions", 512))


def _embedding() -> Any:
    return Vector(_dimensions()) if _is_pg() else sa.LargeBinary()


def _json() -> Any:
    return postgresql.JSONB(astext_type=sa.Text()) if _is_pg() else sa.JSON()


def _bigint() -> Any:
    # INTEGER on SQLite so the key aliases the rowid (FTS5 rows point at it).
    return sa.BigInteger() if _is_pg() else sa.Integer()


def _search_vector(*columns: str) -> tuple[Any, sa.Computed]:
    if not _is_pg():
        return sa.Text(), sa.Computed("NULL", persisted=True)
    joined = " || ' ' || ".join(f"coalesce({c}, '')" for c in columns)
    return postgresql.TSVECTOR(), sa.Computed(
        f"to_tsvector('english'::regconfig, {joined})", persisted=True
    )


def _create_search_structures() -> None:
    if _is_pg():
        for table in EMBEDDED:
            op.create_index(
                f"ix_{table}_embedding_hnsw",
                table,
                ["embedding"],
                postgresql_using="hnsw",
                postgresql_ops={"embedding": "vector_cosine_ops"},
            )
        for table in FULLTEXT:
            op.create_index(
                f"ix_{table}_search_vector", table, ["search_vector"], postgresql_using="gin"
            )
        op.create_index(
            "ix_workflow_runs_metadata_gin", "workflow_runs", ["metadata"], postgresql_using="gin"
        )
        return
    for table, columns in FULLTEXT.items():
        rowid = ROWID[table]
        cols = ", ".join(columns)
        new = ", ".join(f"new.{c}" for c in columns)
        old = ", ".join(f"old.{c}" for c in columns)
        op.execute(
            f"CREATE VIRTUAL TABLE {table}_fts USING fts5({cols}, content='{table}', "
            f"content_rowid='{rowid}', tokenize='porter unicode61')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_fts_insert AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {table}_fts(rowid, {cols}) VALUES (new.{rowid}, {new}); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO {table}_fts({table}_fts, rowid, {cols}) "
            f"VALUES ('delete', old.{rowid}, {old}); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_fts_update AFTER UPDATE OF {cols} ON {table} BEGIN "
            f"INSERT INTO {table}_fts({table}_fts, rowid, {cols}) "
            f"VALUES ('delete', old.{rowid}, {old}); "
            f"INSERT INTO {table}_fts(rowid, {cols}) VALUES (new.{rowid}, {new}); END"
        )


def _drop_search_structures() -> None:
    if _is_pg():
        return  # indexes go with their tables
    for table in FULLTEXT:
        for suffix in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {table}_fts")


def upgrade() -> None:
    op.create_table(
        "agent_playbooks",
        sa.Column("agent_playbook_id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("playbook_name", sa.Text(), nullable=False),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("blocking_issue", _json(), nullable=True),
        sa.Column(
            "playbook_status",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                name="playbook_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("playbook_metadata", _json(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "current",
                "pending",
                "archived",
                "archive_in_progress",
                "merged",
                "superseded",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("expanded_terms", sa.Text(), nullable=True),
        sa.Column("embedding", _embedding(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "search_vector", *_search_vector("content", "trigger", "expanded_terms"), nullable=True
        ),
        sa.PrimaryKeyConstraint("agent_playbook_id", name=op.f("pk_agent_playbooks")),
    )
    with op.batch_alter_table("agent_playbooks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_playbooks_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_agent_playbooks_playbook_name_agent_version"),
            ["playbook_name", "agent_version"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_agent_playbooks_playbook_status"), ["playbook_status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agent_playbooks_status"), ["status"], unique=False)

    op.create_table(
        "agent_success_evaluation_results",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("evaluation_name", sa.Text(), nullable=False),
        sa.Column("is_success", sa.Boolean(), nullable=True),
        sa.Column("failure_type", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("regular_vs_shadow", sa.Text(), nullable=True),
        sa.Column("number_of_correction_per_session", sa.Integer(), nullable=True),
        sa.Column("user_turns_to_resolution", sa.Integer(), nullable=True),
        sa.Column("is_escalated", sa.Boolean(), nullable=True),
        sa.Column("embedding", _embedding(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_success_evaluation_results")),
        sa.UniqueConstraint(
            "session_id",
            "evaluation_name",
            name=op.f("uq_agent_success_evaluation_results_session_id_evaluation_name"),
        ),
    )
    with op.batch_alter_table("agent_success_evaluation_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_success_evaluation_results_agent_version_created_at"),
            ["agent_version", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_agent_success_evaluation_results_created_at"),
            ["created_at"],
            unique=False,
        )

    op.create_table(
        "operation_states",
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("service_name", name=op.f("pk_operation_states")),
    )
    op.create_table(
        "organizations",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("configuration_json", _json(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("login", name=op.f("uq_organizations_login")),
    )
    op.create_table(
        "playbook_aggregation_change_logs",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("playbook_name", sa.Text(), nullable=True),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("before", _json(), nullable=False),
        sa.Column("after", _json(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_aggregation_change_logs")),
    )
    with op.batch_alter_table("playbook_aggregation_change_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_aggregation_change_logs_created_at"),
            ["created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_playbook_aggregation_change_logs_playbook_name_agent_version"),
            ["playbook_name", "agent_version"],
            unique=False,
        )

    op.create_table(
        "playbook_optimization_jobs",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("playbook_name", sa.Text(), nullable=True),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("config", _json(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_optimization_jobs")),
    )
    with op.batch_alter_table("playbook_optimization_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_jobs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_jobs_status_created_at"),
            ["status", "created_at"],
            unique=False,
        )

    op.create_table(
        "profile_change_logs",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("added_profiles", _json(), nullable=False),
        sa.Column("removed_profiles", _json(), nullable=False),
        sa.Column("mentioned_profiles", _json(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_change_logs")),
    )
    with op.batch_alter_table("profile_change_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_profile_change_logs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_profile_change_logs_user_id_created_at"),
            ["user_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "profiles",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("profile_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("custom_features", _json(), nullable=True),
        sa.Column("extractor_names", _json(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "current",
                "pending",
                "archived",
                "archive_in_progress",
                "merged",
                "superseded",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("generated_from_request_id", sa.Text(), nullable=True),
        sa.Column("profile_time_to_live", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expanded_terms", sa.Text(), nullable=True),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("embedding", _embedding(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("search_vector", *_search_vector("content", "expanded_terms"), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
        sa.UniqueConstraint("profile_id", name=op.f("uq_profiles_profile_id")),
    )
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profiles_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_profiles_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_profiles_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_profiles_user_id_status_created_at"),
            ["user_id", "status", "created_at"],
            unique=False,
        )

    op.create_table(
        "requests",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_requests")),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_requests_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_requests_session_id_created_at"),
            ["session_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_requests_user_id_created_at"), ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "share_links",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_share_links")),
    )
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_share_links_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_share_links_resource_type_resource_id"),
            ["resource_type", "resource_id"],
            unique=False,
        )

    op.create_table(
        "user_playbooks",
        sa.Column("user_playbook_id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("playbook_name", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("agent_version", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("blocking_issue", _json(), nullable=True),
        sa.Column("source_interaction_ids", _json(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "current",
                "pending",
                "archived",
                "archive_in_progress",
                "merged",
                "superseded",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("expanded_terms", sa.Text(), nullable=True),
        sa.Column("embedding", _embedding(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "search_vector", *_search_vector("content", "trigger", "expanded_terms"), nullable=True
        ),
        sa.PrimaryKeyConstraint("user_playbook_id", name=op.f("pk_user_playbooks")),
    )
    with op.batch_alter_table("user_playbooks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_user_playbooks_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_user_playbooks_playbook_name_agent_version"),
            ["playbook_name", "agent_version"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_user_playbooks_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_user_playbooks_user_id_status_created_at"),
            ["user_id", "status", "created_at"],
            unique=False,
        )

    op.create_table(
        "workflow_runs",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("pipeline_id", sa.Text(), nullable=True),
        sa.Column("pipeline_name", sa.Text(), nullable=True),
        sa.Column("pipeline_version", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("current_step_index", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("pipeline_context", _json(), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_workflow_runs")),
    )
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_created_at_run_id"), ["created_at", "run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_pipeline_id_created_at"),
            ["pipeline_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_pipeline_name_created_at"),
            ["pipeline_name", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_status_created_at"), ["status", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "agent_playbook_sources",
        sa.Column("agent_playbook_id", _bigint(), nullable=False),
        sa.Column("user_playbook_id", _bigint(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_playbook_id"],
            ["agent_playbooks.agent_playbook_id"],
            name=op.f("fk_agent_playbook_sources_agent_playbook_id_agent_playbooks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_playbook_id"],
            ["user_playbooks.user_playbook_id"],
            name=op.f("fk_agent_playbook_sources_user_playbook_id_user_playbooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "agent_playbook_id", "user_playbook_id", name=op.f("pk_agent_playbook_sources")
        ),
    )
    with op.batch_alter_table("agent_playbook_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_playbook_sources_user_playbook_id"),
            ["user_playbook_id"],
            unique=False,
        )

    op.create_table(
        "api_tokens",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("organization_id", _bigint(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_api_tokens_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_tokens_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "interactions",
        sa.Column("interaction_id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("user_action", sa.Text(), nullable=True),
        sa.Column("user_action_description", sa.Text(), nullable=True),
        sa.Column("interacted_image_url", sa.Text(), nullable=True),
        sa.Column("shadow_content", sa.Text(), nullable=True),
        sa.Column("expert_content", sa.Text(), nullable=True),
        sa.Column("tools_used", _json(), nullable=False),
        sa.Column("embedding", _embedding(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("search_vector", *_search_vector("content"), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.request_id"],
            name=op.f("fk_interactions_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("interaction_id", name=op.f("pk_interactions")),
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_interactions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_interactions_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_interactions_user_id_created_at"),
            ["user_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "playbook_optimization_candidates",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("job_id", _bigint(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("candidate_metadata", _json(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["playbook_optimization_jobs.id"],
            name=op.f("fk_playbook_optimization_candidates_job_id_playbook_optimization_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_optimization_candidates")),
    )
    with op.batch_alter_table("playbook_optimization_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_candidates_job_id_created_at"),
            ["job_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "playbook_optimization_events",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("job_id", _bigint(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", _json(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["playbook_optimization_jobs.id"],
            name=op.f("fk_playbook_optimization_events_job_id_playbook_optimization_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_optimization_events")),
    )
    with op.batch_alter_table("playbook_optimization_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_events_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_events_job_id_created_at"),
            ["job_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "playbook_optimization_evaluations",
        sa.Column("id", _bigint(), autoincrement=True, nullable=False),
        sa.Column("candidate_id", _bigint(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("details", _json(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["playbook_optimization_candidates.id"],
            name=op.f(
                "fk_playbook_optimization_evaluations_candidate_id_playbook_optimization_candidates"
            ),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_optimization_evaluations")),
    )
    with op.batch_alter_table("playbook_optimization_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_optimization_evaluations_candidate_id_created_at"),
            ["candidate_id", "created_at"],
            unique=False,
        )

    _create_search_structures()


def downgrade() -> None:
    _drop_search_structures()
    with op.batch_alter_table("playbook_optimization_evaluations", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_playbook_optimization_evaluations_candidate_id_created_at")
        )

    op.drop_table("playbook_optimization_evaluations")
    with op.batch_alter_table("playbook_optimization_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_playbook_optimization_events_job_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_playbook_optimization_events_created_at"))

    op.drop_table("playbook_optimization_events")
    with op.batch_alter_table("playbook_optimization_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_playbook_optimization_candidates_job_id_created_at"))

    op.drop_table("playbook_optimization_candidates")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interactions_user_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_interactions_request_id"))
        batch_op.drop_index(batch_op.f("ix_interactions_created_at"))

    op.drop_table("interactions")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_organization_id"))

    op.drop_table("api_tokens")
    with op.batch_alter_table("agent_playbook_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_playbook_sources_user_playbook_id"))

    op.drop_table("agent_playbook_sources")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_runs_updated_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_pipeline_name_created_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_pipeline_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_created_at_run_id"))

    op.drop_table("workflow_runs")
    with op.batch_alter_table("user_playbooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_playbooks_user_id_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_user_playbooks_status"))
        batch_op.drop_index(batch_op.f("ix_user_playbooks_playbook_name_agent_version"))
        batch_op.drop_index(batch_op.f("ix_user_playbooks_created_at"))

    op.drop_table("user_playbooks")
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_links_resource_type_resource_id"))
        batch_op.drop_index(batch_op.f("ix_share_links_expires_at"))

    op.drop_table("share_links")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_user_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_requests_session_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_requests_created_at"))

    op.drop_table("requests")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profiles_user_id_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_profiles_status"))
        batch_op.drop_index(batch_op.f("ix_profiles_expires_at"))
        batch_op.drop_index(batch_op.f("ix_profiles_created_at"))

    op.drop_table("profiles")
    with op.batch_alter_table("profile_change_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_change_logs_user_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_profile_change_logs_created_at"))

    op.drop_table("profile_change_logs")
    with op.batch_alter_table("playbook_optimization_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_playbook_optimization_jobs_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_playbook_optimization_jobs_created_at"))

    op.drop_table("playbook_optimization_jobs")
    with op.batch_alter_table("playbook_aggregation_change_logs", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_playbook_aggregation_change_logs_playbook_name_agent_version")
        )
        batch_op.drop_index(batch_op.f("ix_playbook_aggregation_change_logs_created_at"))

    op.drop_table("playbook_aggregation_change_logs")
    op.drop_table("organizations")
    op.drop_table("operation_states")
    with op.batch_alter_table("agent_success_evaluation_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_success_evaluation_results_created_at"))
        batch_op.drop_index(
            batch_op.f("ix_agent_success_evaluation_results_agent_version_created_at")
        )

    op.drop_table("agent_success_evaluation_results")
    with op.batch_alter_table("agent_playbooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_playbooks_status"))
        batch_op.drop_index(batch_op.f("ix_agent_playbooks_playbook_status"))
        batch_op.drop_index(batch_op.f("ix_agent_playbooks_playbook_name_agent_version"))
        batch_op.drop_index(batch_op.f("ix_agent_playbooks_created_at"))

    op.drop_table("agent_playbooks")
