"""Links from agent playbooks to the user playbooks they came from — SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from reflexio_store import SessionFactory
from reflexio_store.errors import NotFoundError
from reflexio_store.models import AgentPlaybookSource
from reflexio_store.store import Store


def test_agent_playbook_sources_link_and_cascade(store: Store, factory: SessionFactory) -> None:
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(3)]
    )
    agent, agent2 = store.add_agent_playbooks(
        [{"playbook_name": "tone", "content": "agg"}, {"playbook_name": "tone", "content": "b"}]
    )
    assert store.add_agent_playbook_sources(agent, users) == 3
    assert store.add_agent_playbook_sources(agent, [users[0]]) == 0  # already linked
    assert store.add_agent_playbook_sources(agent2, [users[0]]) == 1
    with pytest.raises(NotFoundError, match="user playbook"):
        store.add_agent_playbook_sources(agent2, [users[1], 987_654])
    with pytest.raises(NotFoundError, match="agent playbook"):
        store.add_agent_playbook_sources(987_654, [users[1]])
    sources = store.get_agent_playbook_sources(agent, consistency="strong")
    assert [s.user_playbook_id for s in sources] == users
    assert [
        s.user_playbook_id for s in store.get_agent_playbook_sources(agent2, consistency="strong")
    ] == [users[0]]

    store.delete_user_playbooks([users[0]])  # link rows of both agent playbooks go with it
    assert len(store.get_agent_playbook_sources(agent, consistency="strong")) == 2
    assert store.remove_agent_playbook_sources(agent, [users[1]]) == 1
    store.delete_agent_playbooks([agent])
    with factory.writer() as session:
        links = session.execute(select(func.count()).select_from(AgentPlaybookSource)).scalar()
        assert links == 0
    assert store.count_user_playbooks() == 2  # the user playbooks themselves stay


def test_concurrent_add_agent_playbook_sources_links_each_pair_once(
    store: Store, factory: SessionFactory
) -> None:
    # Concurrent calls with the same ids used to read "no links yet" and then all insert them:
    # on PostgreSQL every loser raised a raw IntegrityError (duplicate primary key).
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(4)]
    )
    (agent,) = store.add_agent_playbooks([{"playbook_name": "tone", "content": "agg"}])
    workers = 6
    barrier = threading.Barrier(workers)
    results: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def link(order: list[int]) -> None:
        try:
            barrier.wait(timeout=30)
            added = store.add_agent_playbook_sources(agent, order)
            with guard:
                results.append(added)
        except BaseException as exc:  # collected and asserted below
            with guard:
                errors.append(exc)

    threads = [
        threading.Thread(target=link, args=(users if n % 2 else users[::-1],))
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == workers
    assert sum(results) == len(users)
    assert store.add_agent_playbook_sources(agent, users) == 0
    with factory.writer() as session:
        rows = session.execute(
            select(AgentPlaybookSource.user_playbook_id, func.count())
            .where(AgentPlaybookSource.agent_playbook_id == agent)
            .group_by(AgentPlaybookSource.user_playbook_id)
        ).all()
    assert sorted(rows) == [(u, 1) for u in sorted(users)]


def test_add_agent_playbook_sources_counts_only_new_links(store: Store) -> None:
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(3)]
    )
    (agent,) = store.add_agent_playbooks([{"playbook_name": "tone", "content": "agg"}])
    assert store.add_agent_playbook_sources(agent, [users[1]]) == 1
    # Duplicates in one call count once; the already-linked id counts zero.
    assert store.add_agent_playbook_sources(agent, [users[2], users[0], users[1], users[2]]) == 2
    sources = store.get_agent_playbook_sources(agent, consistency="strong")
    assert sorted(s.user_playbook_id for s in sources) == sorted(users)
