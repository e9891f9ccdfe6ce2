"""Profile and playbook aggregation change logs — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.store import Store
from tests.support.store_helpers import wait_for_replica


def test_profile_change_logs(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    ids = []
    for i in range(5):
        log = store.add_profile_change_log(
            request_id=f"r{i}",
            user_id="u1" if i % 2 == 0 else "u2",
            added_profiles=[{"profile_id": f"p{i}", "content": "likes tea"}],
            removed_profiles=[],
            mentioned_profiles=[f"p{i - 1}"] if i else [],
        )
        ids.append(log.id)
    wait_for_replica(factory, request)
    logs = store.list_profile_change_logs()
    assert [log.id for log in logs] == list(reversed(ids))
    assert logs[0].added_profiles == [{"profile_id": "p4", "content": "likes tea"}]
    assert [log.request_id for log in store.list_profile_change_logs(user_id="u1")] == [
        "r4",
        "r2",
        "r0",
    ]
    assert [log.request_id for log in store.list_profile_change_logs(limit=2, offset=1)] == [
        "r3",
        "r2",
    ]
    with pytest.raises(ValidationError, match="added_profiles"):
        store.add_profile_change_log(added_profiles={"not": "a list"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="limit"):
        store.list_profile_change_logs(limit=-1)


def test_playbook_aggregation_change_logs(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    store.add_playbook_aggregation_change_log(
        playbook_name="pb", agent_version="v1", before=[], after=[{"id": 1}]
    )
    store.add_playbook_aggregation_change_log(
        playbook_name="pb", agent_version="v2", before=[{"id": 1}], after=[{"id": 2}]
    )
    store.add_playbook_aggregation_change_log(playbook_name="other", agent_version="v1")
    wait_for_replica(factory, request)
    all_logs = store.list_playbook_aggregation_change_logs()
    assert [(log.playbook_name, log.agent_version) for log in all_logs] == [
        ("other", "v1"),
        ("pb", "v2"),
        ("pb", "v1"),
    ]
    pb = store.list_playbook_aggregation_change_logs(playbook_name="pb")
    assert [log.agent_version for log in pb] == ["v2", "v1"]
    one = store.list_playbook_aggregation_change_logs(playbook_name="pb", agent_version="v1")
    assert len(one) == 1 and one[0].after == [{"id": 1}] and one[0].before == []
