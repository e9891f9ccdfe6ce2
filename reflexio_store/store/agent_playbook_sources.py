"""Which user playbooks an agent playbook was aggregated from (a many-to-many link)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.orm import Session

from reflexio_store.dialect import insert_or_ignore
from reflexio_store.errors import NotFoundError, ValidationError
from reflexio_store.models import AgentPlaybook, AgentPlaybookSource, UserPlaybook
from reflexio_store.store._operation import read, write
from reflexio_store.store.agent_playbooks import AGENT_PLAYBOOKS
from reflexio_store.store.crud import rowcount
from reflexio_store.store.rows import ID_CHUNK
from reflexio_store.store.user_playbooks import USER_PLAYBOOKS
from reflexio_store.validation import require_int_id


def add_agent_playbook_sources(
    session: Session, agent_playbook_id: int, user_playbook_ids: Sequence[int]
) -> int:
    """Record that an agent playbook was aggregated from these user playbooks.

    Links that already exist are kept; returns how many new links were added. An agent or user
    playbook that does not exist raises NotFoundError and nothing is written.
    """
    wanted = USER_PLAYBOOKS.ids(user_playbook_ids)
    (agent_playbook_id,) = AGENT_PLAYBOOKS.ids([agent_playbook_id])
    if len(wanted) > ID_CHUNK:
        raise ValidationError(f"At most {ID_CHUNK} user playbook ids per call; send batches.")
    if session.get(AgentPlaybook, agent_playbook_id) is None:
        raise NotFoundError(f"No agent playbook with id {agent_playbook_id!r}.")
    found = set(
        session.scalars(
            select(UserPlaybook.user_playbook_id).where(UserPlaybook.user_playbook_id.in_(wanted))
        )
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"No user playbook with id(s) {missing}; no links were added.")
    # One INSERT ... ON CONFLICT DO NOTHING RETURNING: links that already exist (including ones
    # a concurrent call is inserting right now) are skipped by the database instead of raising
    # IntegrityError, and the returned rows are exactly the links this call added. Rows go in
    # id order so concurrent calls wait on each other's rows in the same order (no deadlock).
    stmt = (
        insert_or_ignore(session, AgentPlaybookSource, ["agent_playbook_id", "user_playbook_id"])
        .values(
            [
                {"agent_playbook_id": agent_playbook_id, "user_playbook_id": i}
                for i in sorted(wanted)
            ]
        )
        .returning(AgentPlaybookSource.user_playbook_id)
    )
    return len(session.execute(stmt).all())


def get_agent_playbook_sources(session: Session, agent_playbook_id: int) -> list[UserPlaybook]:
    """The user playbooks an agent playbook was aggregated from, oldest first."""
    statement = (
        select(UserPlaybook)
        .join(
            AgentPlaybookSource,
            and_(
                AgentPlaybookSource.user_playbook_id == UserPlaybook.user_playbook_id,
                AgentPlaybookSource.agent_playbook_id
                == require_int_id(agent_playbook_id, "agent_playbook_id"),
            ),
        )
        .order_by(UserPlaybook.created_at, UserPlaybook.user_playbook_id)
    )
    return list(session.scalars(statement).all())


def remove_agent_playbook_sources(
    session: Session, agent_playbook_id: int, user_playbook_ids: Sequence[int] | None = None
) -> int:
    """Remove source links of an agent playbook (all of them when ids is None); return how many."""
    agent_playbook_id = require_int_id(agent_playbook_id, "agent_playbook_id")
    where: list[ColumnElement[bool]] = [AgentPlaybookSource.agent_playbook_id == agent_playbook_id]
    if user_playbook_ids is not None:
        where.append(
            AgentPlaybookSource.user_playbook_id.in_(USER_PLAYBOOKS.ids(user_playbook_ids))
        )
    return rowcount(session.execute(delete(AgentPlaybookSource).where(*where)))


class AgentPlaybookSourceOperations:
    """The user playbooks an agent playbook was aggregated from: add, get, remove."""

    add_agent_playbook_sources = write(add_agent_playbook_sources)
    get_agent_playbook_sources = read(get_agent_playbook_sources)
    remove_agent_playbook_sources = write(remove_agent_playbook_sources)
