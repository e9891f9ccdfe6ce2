"""Row limits (REFLEXIO_ROW_LIMIT_*) on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from reflexio_store import SessionFactory
from reflexio_store.errors import ConfigurationError, ValidationError
from reflexio_store.models import (
    Interaction,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
    ProfileChangeLog,
)
from reflexio_store.store import Store, retention
from reflexio_store.store.retention import DEFAULT_ROW_LIMIT, RetentionSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(factory: SessionFactory) -> Store:
    return Store(factory)


def add_profiles_at(store: Store, minutes: list[int]) -> None:
    """One profile per entry, named p<minute>, created at T0 + minute (inserted shuffled, so
    key order and time order differ)."""
    order = list(minutes)
    random.Random(7).shuffle(order)
    store.add_profiles(
        [
            {"profile_id": f"p{m}", "user_id": "u", "content": f"c{m}", "created_at": at(m)}
            for m in order
        ]
    )


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def profile_ids(store: Store) -> set[str]:
    return {p.profile_id for p in store.list_profiles(limit=1000, consistency="strong")}


def interaction_fulltext_hits(factory: SessionFactory, word: str) -> int:
    with factory.writer() as session:
        if factory.backend == "sqlite":
            sql = text("SELECT count(*) FROM interactions_fts WHERE interactions_fts MATCH :w")
            return int(session.execute(sql, {"w": word}).scalar_one())
        query = (
            select(func.count())
            .select_from(Interaction)
            .where(Interaction.search_vector.op("@@")(func.plainto_tsquery("english", word)))
        )
        return int(session.execute(query).scalar_one())


def test_table_at_limit_loses_its_oldest_fifth(store: Store) -> None:
    add_profiles_at(store, list(range(10)))
    assert store.enforce_row_limits({"profiles": 10}) == {"profiles": 2}
    assert profile_ids(store) == {f"p{m}" for m in range(2, 10)}
    # Now 8 rows: under the limit, nothing happens.
    assert store.enforce_row_limits({"profiles": 10}) == {}
    assert store.count_profiles() == 8


def test_far_over_limit_deletes_twenty_percent_of_rows(store: Store) -> None:
    add_profiles_at(store, list(range(30)))
    assert store.enforce_row_limits({"profiles": 10}) == {"profiles": 6}
    assert profile_ids(store) == {f"p{m}" for m in range(6, 30)}


def test_under_limit_and_zero_disable(store: Store) -> None:
    add_profiles_at(store, list(range(9)))
    assert store.enforce_row_limits({"profiles": 10}) == {}
    assert store.enforce_row_limits({"profiles": 0}) == {}
    assert store.enforce_row_limits({"profiles": 9}) == {"profiles": 1}
    assert "p0" not in profile_ids(store)
    # Default limits (250000) leave a populated store alone on every target table.
    assert store.enforce_row_limits() == {}
    assert store.count_profiles() == 8


def test_ties_on_created_at_are_broken_by_key(store: Store) -> None:
    # Five rows share the oldest timestamp; two of them must go, the ones with lower keys.
    store.add_profiles(
        [
            {"profile_id": f"t{i}", "user_id": "u", "content": "c", "created_at": T0}
            for i in range(5)
        ]
        + [
            {"profile_id": f"n{i}", "user_id": "u", "content": "c", "created_at": at(10 + i)}
            for i in range(5)
        ]
    )
    assert store.enforce_row_limits({"profiles": 10}) == {"profiles": 2}
    assert profile_ids(store) == {"t2", "t3", "t4"} | {f"n{i}" for i in range(5)}


def test_requests_take_their_interactions_and_fulltext_entries(
    store: Store, factory: SessionFactory
) -> None:
    store.add_requests(
        [
            {
                "request_id": f"r{m}",
                "user_id": "u",
                "created_at": at(m),
                "interactions": [
                    {"content": f"word{m} common", "created_at": at(m)},
                    {"content": f"word{m} again", "created_at": at(m)},
                ],
            }
            for m in (5, 0, 9, 1, 8, 2, 7, 3, 6, 4)
        ]
    )
    assert interaction_fulltext_hits(factory, "common") == 10
    deleted = store.enforce_row_limits({"requests": 10})
    assert deleted == {"requests": 2, "interactions": 4}
    remaining = {r.request_id for r in store.get_requests_by_user("u", consistency="strong")}
    assert remaining == {f"r{m}" for m in range(2, 10)}
    assert store.count_interactions() == 16
    assert interaction_fulltext_hits(factory, "word0") == 0
    assert interaction_fulltext_hits(factory, "word1") == 0
    assert interaction_fulltext_hits(factory, "word2") == 2
    assert interaction_fulltext_hits(factory, "common") == 8


def test_interaction_limit_and_legacy_threshold(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_requests(
        [
            {
                "request_id": "r",
                "user_id": "u",
                "interactions": [{"content": f"m{i}", "created_at": at(i)} for i in range(10)],
            }
        ]
    )
    monkeypatch.setenv("INTERACTION_CLEANUP_THRESHOLD", "10")
    assert store.enforce_row_limits() == {"interactions": 2}
    kept = store.get_interactions(request_id="r", consistency="strong")
    assert sorted(i.content for i in kept) == [f"m{i}" for i in range(2, 10)]
    # The new variable wins over the legacy one; 0 disables.
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_INTERACTIONS", "0")
    monkeypatch.setenv("INTERACTION_CLEANUP_THRESHOLD", "1")
    assert store.enforce_row_limits() == {}
    assert store.count_interactions() == 8


def test_record_tables_are_capped(store: Store, factory: SessionFactory) -> None:
    with factory.writer() as session:
        job = PlaybookOptimizationJob()
        session.add(job)
        session.flush()
        session.add_all(
            [
                PlaybookOptimizationEvent(job_id=job.id, event_type=f"e{m}", created_at=at(m))
                for m in (3, 1, 4, 0, 2)
            ]
            + [ProfileChangeLog(user_id="u", created_at=at(m)) for m in range(5)]
        )
    deleted = store.enforce_row_limits(
        {"PLAYBOOK_OPTIMIZATION_EVENTS": 5, "REFLEXIO_ROW_LIMIT_PROFILE_CHANGE_LOGS": 6}
    )
    assert deleted == {"playbook_optimization_events": 1}
    with factory.writer() as session:
        kinds = session.scalars(select(PlaybookOptimizationEvent.event_type)).all()
        assert sorted(kinds) == ["e1", "e2", "e3", "e4"]
        logs = session.execute(select(func.count()).select_from(ProfileChangeLog)).scalar()
        assert logs == 5


def test_cheap_check_is_exact_despite_key_gaps(store: Store, factory: SessionFactory) -> None:
    add_profiles_at(store, list(range(20)))
    # Leave 5 rows spread over the whole key range: max(key) - min(key) + 1 is about 20.
    store.delete_profiles([f"p{m}" for m in range(20) if m % 4])
    assert store.count_profiles() == 5
    target = next(t for t in retention.TARGETS if t.table == "profiles")
    with factory.writer() as session:
        assert retention.at_or_over_limit(session, target, 5) is True
        assert retention.at_or_over_limit(session, target, 6) is False
        assert retention.at_or_over_limit(session, target, 0) is False
    assert store.enforce_row_limits({"profiles": 6}) == {}
    assert store.enforce_row_limits({"profiles": 5}) == {"profiles": 1}
    assert profile_ids(store) == {"p4", "p8", "p12", "p16"}


def test_bad_overrides_are_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="Unknown retention target"):
        store.enforce_row_limits({"profils": 10})
    with pytest.raises(
        ValidationError, match="row limit for profiles must be an integer between 0"
    ):
        store.enforce_row_limits({"profiles": -1})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RetentionSettings()
    assert settings.limit_for("profiles") == DEFAULT_ROW_LIMIT
    assert settings.limit_for("interactions") == DEFAULT_ROW_LIMIT
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_PROFILES", "0")
    monkeypatch.setenv("INTERACTION_CLEANUP_THRESHOLD", "123")
    settings = RetentionSettings()
    assert settings.limit_for("profiles") == 0
    assert settings.limit_for("interactions") == 123
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_INTERACTIONS", "77")
    assert RetentionSettings().limit_for("interactions") == 77
    assert RetentionSettings(requests=5).limit_for("requests") == 5


def test_bad_environment_value_is_a_configuration_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_PROFILES", "lots")
    with pytest.raises(ConfigurationError, match="REFLEXIO_ROW_LIMIT_"):
        store.enforce_row_limits()


def test_bounds_are_upper_bounds_of_every_table(store: Store, factory: SessionFactory) -> None:
    store.add_requests(
        [
            {
                "request_id": f"r{i}",
                "user_id": "u",
                "interactions": [{"content": f"x{i}-{j}"} for j in range(3)],
            }
            for i in range(40)
        ]
    )
    add_profiles_at(store, list(range(25)))
    store.delete_profiles(["p3", "p11"])
    with factory.writer() as session:
        bounds = retention._upper_bounds(session)
        for target in retention.TARGETS:
            count = session.execute(select(func.count()).select_from(target.model)).scalar_one()
            bound = bounds[target.table]
            assert bound is not None and bound >= count, target.table
            if count == 0:
                assert bound == 0, target.table
    assert bounds["profiles"] == 25  # key range, gaps included
    # PostgreSQL bounds requests (text keys) by heap pages: still far below the default limit.
    assert bounds["requests"] is not None and 40 <= bounds["requests"] < DEFAULT_ROW_LIMIT


def test_requests_at_their_limit_are_found_through_the_page_bound(store: Store) -> None:
    store.add_requests(
        [{"request_id": f"r{m}", "user_id": "u", "created_at": at(m)} for m in range(600)]
    )
    # 600 rows span several heap pages on PostgreSQL: the bound says "maybe", the probe decides.
    assert store.enforce_row_limits({"requests": 601}) == {}
    assert store.enforce_row_limits({"requests": 600}) == {"requests": 120}


def test_settings_changes_in_the_environment_are_seen(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_profiles_at(store, list(range(5)))
    assert store.enforce_row_limits() == {}
    monkeypatch.setenv("reflexio_row_limit_profiles", "5")  # names are case-insensitive
    assert store.enforce_row_limits() == {"profiles": 1}
    monkeypatch.setenv("reflexio_row_limit_profiles", "0")
    add_profiles_at(store, list(range(10, 20)))
    assert store.enforce_row_limits() == {}
