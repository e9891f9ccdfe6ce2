"""User playbooks — SQLite and PostgreSQL (primary + replica)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reflexio_store.enums import Status
from reflexio_store.errors import ValidationError
from reflexio_store.store import Store, lifecycle


def test_user_playbooks(store: Store, sync_replica: Callable[[], None]) -> None:
    ids = store.add_user_playbooks(
        [
            {"user_id": "u", "playbook_name": "tone", "content": "be brief", "status": "current"},
            {
                "user_id": "u",
                "playbook_name": "tone",
                "content": "be briefer",
                "agent_version": "2",
            },
            {"user_id": "u", "playbook_name": "format", "content": "use lists"},
            {"user_id": None, "playbook_name": "tone", "content": "shared", "status": "current"},
            {"user_id": None, "playbook_name": "tone", "content": "shared new"},
        ]
    )
    assert ids == sorted(ids) and len(ids) == 5
    sync_replica()
    pb = store.get_user_playbook(ids[1])
    assert pb is not None and pb.status is Status.PENDING and pb.source_interaction_ids == []
    assert [p.user_playbook_id for p in store.get_user_playbooks_by_ids([ids[2], ids[0]])] == [
        ids[2],
        ids[0],
    ]
    assert [p.content for p in store.list_user_playbooks(user_id="u", playbook_name="tone")] == [
        "be briefer",
        "be brief",
    ]
    assert [p.content for p in store.list_user_playbooks(agent_version="2")] == ["be briefer"]
    assert store.count_user_playbooks(status="pending") == 3

    result = store.promote_pending_user_playbooks("u", "tone")
    assert result == lifecycle.Promotion(archived=1, promoted=1)
    by_id = {p.user_playbook_id: p for p in store.list_user_playbooks(consistency="strong")}
    assert by_id[ids[0]].status is Status.ARCHIVED
    assert by_id[ids[1]].status is Status.CURRENT
    assert by_id[ids[2]].status is Status.PENDING  # other playbook_name
    assert by_id[ids[3]].status is Status.CURRENT  # user None is its own scope
    assert store.promote_pending_user_playbooks(None, "tone") == lifecycle.Promotion(1, 1)

    updated = store.update_user_playbook(ids[2], {"content": "use numbered lists"})
    assert updated.content == "use numbered lists"
    with pytest.raises(ValidationError, match="Unknown status"):
        store.update_user_playbook(ids[2], {"status": "bogus"})
    assert store.delete_user_playbooks_by_playbook_name("format") == 1
    assert store.delete_user_playbooks_by_status("archived", user_id="u") == 1
    assert store.delete_user_playbooks([ids[1]]) == 1
    assert store.delete_user_playbooks_by_user("u") == 0
    assert store.count_user_playbooks() == 2
