"""List, count and search build their WHERE clauses with one builder (search/filters.py):
the same filter argument is refused the same way, and selects the same rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from reflexio_store.errors import ValidationError
from reflexio_store.store import Store

BAD_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"user_id": 5}, "user_id"),
    ({"user_id": "u\x00v"}, "user_id"),
    ({"source": ["ok", 7]}, "source"),
    ({"tags": [1]}, "tags"),
    ({"tags": ["a\x00"]}, "tags"),
    ({"extractor_name": 3}, "extractor_name"),
    ({"status": []}, "status"),
    ({"status": "live"}, "status"),
]


@pytest.mark.parametrize(("bad", "named"), BAD_FILTERS)
def test_list_count_and_search_refuse_a_bad_filter_alike(
    store: Store, bad: dict[str, Any], named: str
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: store.list_profiles(**bad),
        lambda: store.count_profiles(**bad),
        lambda: store.search_profiles("anything", **bad),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match=named):
            call()


def test_created_range_names_the_callers_argument(store: Store) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValidationError, match="created_from"):
        store.list_profiles(created_from=naive)
    with pytest.raises(ValidationError, match="created_to"):
        store.list_user_playbooks(created_to=naive)
    with pytest.raises(ValidationError, match="created_after"):
        store.search_profiles("x", created_after=naive)


def test_list_and_search_select_the_same_rows(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    store.add_profiles(
        [
            {"profile_id": "a", "user_id": "u1", "content": "likes tea", "tags": ["x", "y"]},
            {"profile_id": "b", "user_id": "u1", "content": "likes tea", "tags": ["x"]},
            {"profile_id": "c", "user_id": "u2", "content": "likes tea", "tags": ["y"]},
            {"profile_id": "d", "user_id": "u2", "content": "likes tea", "source": "s"},
        ],
    )
    store.promote_pending_profiles("u1")
    store.promote_pending_profiles("u2")
    sync_replica()
    cases: list[dict[str, Any]] = [
        {},
        {"user_id": "u1"},
        {"user_id": ["u1", "u2"]},
        {"tags": "x"},
        {"tags": ["x", "y"]},
        {"source": "s"},
        {"status": ["current", "pending"]},
    ]
    for filters in cases:
        listed = {p.profile_id for p in store.list_profiles(**filters)}
        searched = {h.item.profile_id for h in store.search_profiles("tea", top_k=50, **filters)}
        assert listed == searched, filters
        assert store.count_profiles(**filters) == len(listed), filters


def test_playbook_lists_take_one_value_or_a_list(store: Store) -> None:
    store.add_user_playbooks(
        [
            {"user_id": "u1", "playbook_name": "tone", "content": "a"},
            {"user_id": "u2", "playbook_name": "tone", "content": "b"},
            {"user_id": "u3", "playbook_name": "style", "content": "c"},
        ]
    )
    store.add_agent_playbooks(
        [
            {"playbook_name": "tone", "content": "a", "playbook_status": "approved"},
            {"playbook_name": "tone", "content": "b", "playbook_status": "rejected"},
        ]
    )
    assert store.count_user_playbooks(user_id=["u1", "u3"]) == 2
    assert store.count_user_playbooks(playbook_name="tone", user_id="u2") == 1
    listed = store.list_user_playbooks(user_id=["u1", "u2"], consistency="strong")
    assert {p.user_id for p in listed} == {"u1", "u2"}
    assert store.count_agent_playbooks(playbook_status=["approved", "rejected"]) == 2
    assert store.count_agent_playbooks(playbook_status="approved") == 1
    with pytest.raises(ValidationError, match="playbook_status"):
        store.count_agent_playbooks(playbook_status="maybe")
    with pytest.raises(ValidationError, match="agent_version"):
        store.list_agent_playbooks(agent_version=1)  # type: ignore[call-overload]
