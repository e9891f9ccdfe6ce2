"""Share links — SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.models import (
    ShareLink,
)
from reflexio_store.store import AsyncStore, Store
from tests.support.store_helpers import count_rows, wait_for_replica


def test_share_link_round_trip(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    issued = store.create_share_link("profile", "p1", ttl=3600)
    token = issued.token
    assert len(token) >= 40
    assert token not in repr(issued) and token not in repr(issued.record)
    # Only the SHA-256 hash is stored.
    with factory.reader("strong") as session:
        stored = session.execute(select(ShareLink.__table__)).all()
    assert len(stored) == 1
    assert token not in repr(stored)
    assert stored[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    never = store.create_share_link("profile", "p1")
    store.create_share_link("profile", "p2", expires_at=datetime.now(UTC) + timedelta(days=1))
    wait_for_replica(factory, request)
    link = store.resolve_share_link(token)
    assert link is not None and (link.resource_type, link.resource_id) == ("profile", "p1")
    assert link.expires_at is not None and link.expires_at > datetime.now(UTC)
    assert store.resolve_share_link(token + "x") is None
    assert store.resolve_share_link(never.token) is not None
    assert len(store.list_share_links("profile", "p1")) == 2
    assert store.delete_share_link(token) is True
    assert store.delete_share_link(token) is False
    assert store.resolve_share_link(token, consistency="strong") is None
    assert len(store.list_share_links("profile", "p1", consistency="strong")) == 1


def test_share_link_expiry(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    expired = store.create_share_link(
        "playbook", "pb", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    live = store.create_share_link("playbook", "pb", ttl=timedelta(minutes=5))
    wait_for_replica(factory, request)
    assert store.resolve_share_link(expired.token) is None
    assert store.resolve_share_link(live.token) is not None
    assert len(store.list_share_links("playbook", "pb")) == 1
    assert len(store.list_share_links("playbook", "pb", include_expired=True)) == 2
    assert store.delete_expired_share_links() == 1
    assert (
        len(store.list_share_links("playbook", "pb", include_expired=True, consistency="strong"))
        == 1
    )


def test_share_link_bad_input(factory: SessionFactory) -> None:
    store = Store(factory)
    with pytest.raises(ValidationError, match="not both"):
        store.create_share_link("p", "1", expires_at=datetime.now(UTC), ttl=5)
    with pytest.raises(ValidationError, match="timezone-aware"):
        store.create_share_link("p", "1", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match="ttl"):
        store.create_share_link("p", "1", ttl=-5)
    with pytest.raises(ValidationError, match="resource_type"):
        store.create_share_link("", "1")
    with pytest.raises(ValidationError) as info:
        store.resolve_share_link("")
    assert "token" in str(info.value)
    assert count_rows(factory, ShareLink) == 0


async def test_share_links_through_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        issued = await store.create_share_link("r", "1", ttl=60)
        assert await store.resolve_share_link(issued.token, consistency="strong") is not None
    finally:
        await factory.adispose()
