"""Fields Reflexio's own models carry that had no column: the rest of a playbook's structured
data (instruction, pitfall, embedding_text and any extra keys; trigger, rationale and
blocking_issue keep their columns) and the run mode of a playbook aggregation change log.
All nullable, so existing rows and other writers are unaffected.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> Any:
    if op.get_context().dialect.name == "postgresql":
        return postgresql.JSONB(astext_type=sa.Text())
    return sa.JSON()


def upgrade() -> None:
    op.add_column("user_playbooks", sa.Column("structured_data", _json(), nullable=True))
    op.add_column("agent_playbooks", sa.Column("structured_data", _json(), nullable=True))
    op.add_column(
        "playbook_aggregation_change_logs", sa.Column("run_mode", sa.Text(), nullable=True)
    )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN on both databases (SQLite 3.35+): a batch rebuild would
    # copy the generated full-text column, which SQLite refuses.
    op.execute("ALTER TABLE playbook_aggregation_change_logs DROP COLUMN run_mode")
    op.execute("ALTER TABLE agent_playbooks DROP COLUMN structured_data")
    op.execute("ALTER TABLE user_playbooks DROP COLUMN structured_data")
