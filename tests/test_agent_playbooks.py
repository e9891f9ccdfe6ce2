"""Agent playbooks and their review status — SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import NotFoundError, ValidationError
from reflexio_store.store import Store, lifecycle


def test_agent_playbooks_review_and_lifecycle(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    ids = store.add_agent_playbooks(
        [
            {"playbook_name": "tone", "agent_version": "1", "content": "old", "status": "current"},
            {"playbook_name": "tone", "agent_version": "1", "content": "new"},
            {"playbook_name": "tone", "agent_version": "2", "content": "v2", "status": "current"},
            {"playbook_name": "other", "content": "o", "playbook_metadata": {"k": [1, 2]}},
        ]
    )
    sync_replica()
    first = store.get_agent_playbook(ids[3])
    assert first is not None
    assert first.playbook_status is PlaybookReviewStatus.PENDING
    assert first.playbook_metadata == {"k": [1, 2]}

    assert store.set_agent_playbook_review_status([ids[0], ids[1]], "approved") == 2
    with pytest.raises(ValidationError, match="playbook_status"):
        store.set_agent_playbook_review_status([ids[0]], "maybe")
    with pytest.raises(NotFoundError):
        store.set_agent_playbook_review_status([ids[2], 999_999], "rejected")
    sync_replica()
    approved = store.list_agent_playbooks(playbook_status="approved")
    assert [p.agent_playbook_id for p in approved] == [ids[1], ids[0]]
    # The failed call changed nothing, not even the existing id.
    assert store.get_agent_playbook(ids[2]).playbook_status is PlaybookReviewStatus.PENDING  # type: ignore[union-attr]
    assert store.count_agent_playbooks(playbook_name="tone", agent_version="1") == 2

    assert store.promote_pending_agent_playbooks("tone", "1") == lifecycle.Promotion(1, 1)
    by_id = {a.agent_playbook_id: a for a in store.list_agent_playbooks(consistency="strong")}
    assert by_id[ids[0]].status is Status.ARCHIVED
    assert by_id[ids[1]].status is Status.CURRENT
    assert by_id[ids[2]].status is Status.CURRENT  # other agent_version untouched
    assert by_id[ids[3]].status is Status.PENDING
    assert store.restore_agent_playbooks([ids[0]]) == 1
    assert store.archive_agent_playbooks([ids[0], ids[1]]) == 2
    assert store.count_agent_playbooks(status="archived") == 2
    assert store.update_agent_playbook(ids[3], {"playbook_status": "rejected"}).playbook_status == (
        PlaybookReviewStatus.REJECTED
    )
    assert store.delete_agent_playbooks_by_playbook_name("tone", agent_version="2") == 1
    assert store.delete_agent_playbooks_by_status("archived") == 2
    assert store.delete_agent_playbooks([ids[3]]) == 1
    assert store.count_agent_playbooks() == 0
