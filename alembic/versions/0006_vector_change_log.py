"""SQLite: a change log of embeddings, so in-process vector indexes stay coherent with the file

`vector_changes` gets one row (table, key) for every row inserted, deleted or whose embedding
changes in a searched table, written by triggers in the same transaction as the change. An
in-process vector index (reflexio_store.search.vector_index) remembers the last `seq` it has
applied; a search compares it with the newest `seq` in its own snapshot, so changes made by any
process (or any tool) are seen before the index is used. Every 10,000th entry prunes entries
more than 100,000 behind; an index left further behind than that rebuilds itself.
PostgreSQL: nothing to do (pgvector's HNSW index lives in the database).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMBEDDED = {
    "interactions": "interaction_id",
    "profiles": "id",
    "user_playbooks": "user_playbook_id",
    "agent_playbooks": "agent_playbook_id",
    "agent_success_evaluation_results": "id",
}
KEEP = 100_000
PRUNE_EVERY = 10_000


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if not _is_sqlite():
        return
    op.execute(
        "CREATE TABLE vector_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "table_name TEXT NOT NULL, row_key INTEGER NOT NULL)"
    )
    op.execute("CREATE INDEX ix_vector_changes_table_seq ON vector_changes (table_name, seq)")
    op.execute(
        f"CREATE TRIGGER vector_changes_prune AFTER INSERT ON vector_changes "
        f"WHEN new.seq % {PRUNE_EVERY} = 0 BEGIN "
        f"DELETE FROM vector_changes WHERE seq <= new.seq - {KEEP}; END"
    )
    for table, key in EMBEDDED.items():
        log = f"INSERT INTO vector_changes (table_name, row_key) VALUES ('{table}', "
        op.execute(
            f"CREATE TRIGGER {table}_vector_insert AFTER INSERT ON {table} "
            f"BEGIN {log}new.{key}); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_vector_update AFTER UPDATE OF embedding ON {table} "
            f"BEGIN {log}new.{key}); END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_vector_delete AFTER DELETE ON {table} "
            f"BEGIN {log}old.{key}); END"
        )


def downgrade() -> None:
    if not _is_sqlite():
        return
    for table in EMBEDDED:
        for suffix in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_vector_{suffix}")
    op.execute("DROP TABLE IF EXISTS vector_changes")
