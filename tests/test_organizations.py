"""Organizations, passwords and API tokens on both databases; secrets never stored or shown."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from reflexio_store import (
    ConflictError,
    NotFoundError,
    ReflexioStoreError,
    SessionFactory,
    ValidationError,
)
from reflexio_store.models import ApiToken, Organization
from reflexio_store.security import (
    SCRYPT_N,
    hash_password,
    hash_token,
    verify_password_hash,
)
from reflexio_store.store import AsyncStore, Store
from tests.conftest import PgEndpoints

PASSWORD = "correct horse battery staple ✓"


def _sync_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    if factory.backend == "postgresql":
        pg: PgEndpoints = request.getfixturevalue("pg")
        pg.wait_for_replica()


def _all_stored_text(factory: SessionFactory) -> str:
    """Every column of every organization and token row, as text."""
    with factory.reader("strong") as session:
        orgs = session.execute(select(Organization.__table__)).all()
        tokens = session.execute(select(ApiToken.__table__)).all()
    return repr(orgs) + repr(tokens)


# -- security primitives --------------------------------------------------------------------


def test_password_hash_format_and_verification() -> None:
    stored = hash_password(PASSWORD)
    scheme, n, r, p, salt, _digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 1)
    assert len(base64.b64decode(salt)) == 16
    assert PASSWORD not in stored
    assert hash_password(PASSWORD) != stored  # fresh salt every time
    assert verify_password_hash(PASSWORD, stored) is True
    assert verify_password_hash(PASSWORD + "x", stored) is False
    assert verify_password_hash(PASSWORD, None) is False
    assert verify_password_hash(PASSWORD, "scrypt$garbage") is False
    assert verify_password_hash(PASSWORD, "scrypt$1048576000$8$1$AAAA$AAAA") is False
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_verify_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr("reflexio_store.security.hmac.compare_digest", spy)
    assert verify_password_hash(PASSWORD, hash_password(PASSWORD)) is True
    assert calls == [1]


# -- organizations --------------------------------------------------------------------------


def test_create_and_verify(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    org = store.create_organization(
        "ops@example.com", PASSWORD, "Ops", {"storage": {"type": "sqlite"}, "flags": [1, True]}
    )
    assert org.id is not None and org.is_active is True
    assert org.password_hash is not None and org.password_hash.startswith("scrypt$")
    assert store.verify_password("ops@example.com", PASSWORD).id == org.id  # type: ignore[union-attr]
    assert store.verify_password("ops@example.com", "wrong") is None
    assert store.verify_password("nobody@example.com", PASSWORD) is None
    _sync_replica(factory, request)
    found = store.get_organization_by_login("ops@example.com")
    assert found is not None and found.id == org.id and found.name == "Ops"
    assert store.get_organization_by_login("nobody@example.com") is None
    assert store.get_organization(org.id) is not None
    # No password: the login exists but nothing verifies against it.
    store.create_organization("nopass@example.com", None, "No password")
    assert store.verify_password("nopass@example.com", PASSWORD) is None


@pytest.mark.parametrize("login", ["a\x00b", "ops@example.com\x00", "\x00"])
def test_login_with_nul_character(factory: SessionFactory, login: str) -> None:
    # A NUL used to reach PostgreSQL and fail there with a raw driver error.
    store = Store(factory)
    store.create_organization("ops@example.com", PASSWORD, "Ops")
    assert store.verify_password(login, PASSWORD) is None  # an auth check: just "no match"
    with pytest.raises(ValidationError, match="NUL"):
        store.get_organization_by_login(login)
    with pytest.raises(ValidationError, match="NUL"):
        store.get_organization_by_login(login, consistency="strong")
    with pytest.raises(ValidationError, match="NUL"):
        store.create_organization(login, PASSWORD, "Bad")
    with factory.reader("strong") as session:
        assert session.scalars(select(Organization.login)).all() == ["ops@example.com"]
    assert store.verify_password("ops@example.com", PASSWORD) is not None


def test_duplicate_login_conflicts(factory: SessionFactory) -> None:
    store = Store(factory)
    store.create_organization("dup@example.com", PASSWORD, "First")
    with pytest.raises(ConflictError, match="already exists") as info:
        store.create_organization("dup@example.com", "other secret", "Second")
    assert "other secret" not in repr(info.value) and "other secret" not in str(info.value)
    with factory.reader("strong") as session:
        names = session.scalars(select(Organization.name)).all()
    assert names == ["First"]


def test_concurrent_duplicate_login(factory: SessionFactory) -> None:
    """Racing creates of one login: exactly one wins, the others get ConflictError."""
    store = Store(factory)
    workers = 6
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            store.create_organization("race@example.com", None, f"org-{i}")
            result = "ok"
        except ConflictError:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["conflict"] * (workers - 1) + ["ok"]


def test_set_password_and_deactivate(factory: SessionFactory) -> None:
    store = Store(factory)
    org = store.create_organization("a@example.com", PASSWORD)
    store.set_password(org.id, "new password")
    assert store.verify_password("a@example.com", PASSWORD) is None
    assert store.verify_password("a@example.com", "new password") is not None
    issued = store.create_api_token(org.id, "ci")
    assert store.lookup_api_token(issued.token) is not None
    store.deactivate_organization(org.id)
    assert store.verify_password("a@example.com", "new password") is None
    assert store.lookup_api_token(issued.token) is None
    with pytest.raises(ConflictError, match="deactivated"):
        store.create_api_token(org.id, "later")
    store.set_organization_active(org.id, True)
    assert store.verify_password("a@example.com", "new password") is not None
    with pytest.raises(NotFoundError):
        store.set_password(999_999, "x")
    with pytest.raises(NotFoundError):
        store.deactivate_organization(999_999)


def test_configuration_round_trip(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    config = {"storage": {"type": "postgres", "schema": "org_1"}, "limits": [1, 2.5, None, True]}
    org = store.create_organization("cfg@example.com", None, "Cfg", config)
    _sync_replica(factory, request)
    assert store.get_configuration(org.id) == config
    assert isinstance(store.get_configuration(org.id)["storage"], dict)
    assert store.update_configuration(org.id, {"limits": []}, merge=True) == {
        "storage": {"type": "postgres", "schema": "org_1"},
        "limits": [],
    }
    assert store.update_configuration(org.id, {"x": {"y": "z"}}) == {"x": {"y": "z"}}
    assert store.get_configuration(org.id, consistency="strong") == {"x": {"y": "z"}}
    with pytest.raises(ValidationError, match="configuration_json"):
        store.update_configuration(org.id, {"bad": object()})
    with pytest.raises(ValidationError, match="configuration_json"):
        store.create_organization("bad@example.com", None, None, ["x"])  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        store.get_configuration(999_999, consistency="strong")
    assert store.get_configuration(org.id, consistency="strong") == {"x": {"y": "z"}}


# -- API tokens -----------------------------------------------------------------------------


def test_api_tokens(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    org = store.create_organization("tok@example.com", PASSWORD, "Tok")
    issued = store.create_api_token(org.id, "ci")
    token = issued.token
    assert token.startswith("rxs_") and len(token) > 40
    assert issued.record.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert issued.record.last_used_at is None
    found = store.lookup_api_token(token)
    assert found is not None and found.id == issued.record.id
    assert found.organization.login == "tok@example.com"
    assert found.last_used_at is not None
    assert store.lookup_api_token(token + "x") is None
    assert store.lookup_api_token("rxs_unknown") is None
    second = store.create_api_token(org.id)
    _sync_replica(factory, request)
    listed = store.list_api_tokens(org.id)
    assert [t.id for t in listed] == [second.record.id, issued.record.id]
    assert listed[1].last_used_at is not None
    assert store.revoke_api_token(issued.record.id) is True
    assert store.revoke_api_token(issued.record.id) is False
    assert store.lookup_api_token(token) is None
    assert store.lookup_api_token(second.token) is not None
    with pytest.raises(NotFoundError):
        store.create_api_token(999_999, "x")


def test_deleting_org_cascades_to_tokens(factory: SessionFactory) -> None:
    store = Store(factory)
    org = store.create_organization("del@example.com", PASSWORD)
    keep = store.create_organization("keep@example.com", PASSWORD)
    store.create_api_token(org.id, "a")
    store.create_api_token(org.id, "b")
    kept = store.create_api_token(keep.id, "c")
    assert store.delete_organization(org.id) is True
    assert store.delete_organization(org.id) is False
    with factory.reader("strong") as session:
        owners = session.scalars(select(ApiToken.organization_id)).all()
    assert owners == [keep.id]
    assert store.lookup_api_token(kept.token) is not None


def test_secrets_never_stored_logged_or_shown(
    factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = Store(factory)
    org = store.create_organization("sec@example.com", PASSWORD, "Sec")
    issued = store.create_api_token(org.id, "ci")
    token = issued.token
    store.lookup_api_token(token)
    stored = _all_stored_text(factory)
    assert PASSWORD not in stored
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert PASSWORD not in repr(org) and "scrypt$" not in repr(org)
    assert token not in repr(issued) and token not in repr(issued.record)
    assert issued.record.token_hash not in repr(issued.record)
    errors: list[ReflexioStoreError] = []
    calls: list[Callable[[], object]] = [
        lambda: store.create_organization("sec@example.com", PASSWORD),
        lambda: store.create_organization("x@example.com", PASSWORD + "\x00"),
        lambda: store.create_organization("y@example.com", PASSWORD * 100),
        lambda: store.verify_password("sec@example.com", ""),
    ]
    for call in calls:
        with pytest.raises(ReflexioStoreError) as info:
            call()
        errors.append(info.value)
    for error in errors:
        assert PASSWORD not in repr(error) and PASSWORD not in str(error)
    assert PASSWORD not in caplog.text and token not in caplog.text


async def test_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        org = await store.create_organization("async@example.com", PASSWORD, "A", {"k": [1]})
        assert (await store.verify_password("async@example.com", PASSWORD)) is not None
        assert (await store.verify_password("async@example.com", "nope")) is None
        issued = await store.create_api_token(org.id, "ci")
        found = await store.lookup_api_token(issued.token)
        assert found is not None and found.organization_id == org.id
        assert await store.get_configuration(org.id, consistency="strong") == {"k": [1]}
        assert await store.delete_organization(org.id) is True
        assert await store.lookup_api_token(issued.token) is None
    finally:
        await factory.adispose()
