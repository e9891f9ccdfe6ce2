"""The Reflexio backend and the transfer commands under the inputs a fuzzing run found harmful:
each gets one of our errors, and nothing is half-written or written to the wrong rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("reflexio", reason="needs the reflexio extra: pip install -e '.[test]'")

from reflexio.models.api_schema.domain import Interaction, UserProfile

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.integrations.reflexio import ReflexioStoreStorage
from reflexio_store.integrations.reflexio._profiles import MAX_EXPLICIT_ID
from tests.test_reflexio_adapter import NOW, embed


@pytest.fixture
def rx(factory: SessionFactory) -> ReflexioStoreStorage:
    return ReflexioStoreStorage("org-1", factory=factory, embedder=embed)


def _interaction(user: str, request: str, content: str, **kw: object) -> Interaction:
    return Interaction(user_id=user, request_id=request, content=content, created_at=NOW, **kw)


def test_a_rolled_back_insert_leaves_no_id_on_the_items(rx: ReflexioStoreStorage) -> None:
    """Ids are set on the caller's items only after the commit: a retried item whose id had
    been handed out again (SQLite reuses a rolled-back id) would replace another user's row."""
    from reflexio_store.integrations.reflexio._profiles import insert_interactions

    alice = _interaction("u1", "r1", "alice private")
    with pytest.raises(RuntimeError, match="rolled back"), rx.factory.writer() as session:
        assigned = insert_interactions(session, [alice], embed(["alice private"]))
        assert assigned and assigned[0][1] > 0
        raise RuntimeError("rolled back")
    assert not alice.interaction_id
    rx.add_user_interaction("bob", _interaction("bob", "rb", "bob's own"))
    rx.add_user_interactions_bulk("u1", [alice])  # the retry
    assert [i.content for i in rx.get_user_interaction("bob")] == ["bob's own"]
    assert [i.content for i in rx.get_user_interaction("u1")] == ["alice private"]
    assert alice.interaction_id  # set once committed


@pytest.mark.parametrize("given", [2**63 - 1, MAX_EXPLICIT_ID + 1, -5])
def test_explicit_interaction_ids_keep_room_for_generated_ones(
    rx: ReflexioStoreStorage, given: int
) -> None:
    with pytest.raises(ValidationError, match="interaction_id"):
        rx.add_user_interaction("u1", _interaction("u1", "r1", "x", interaction_id=given))
    rx.add_user_interaction("u1", _interaction("u1", "r2", "still writable"))
    assert [i.content for i in rx.get_user_interaction("u1")] == ["still writable"]


def test_a_str_where_a_list_of_ids_is_expected_is_refused(rx: ReflexioStoreStorage) -> None:
    """ "ab" is not the users "a" and "b": refused, and nobody's profiles change."""
    for user in ("a", "b", "ab"):
        rx.add_user_profile(
            user,
            [UserProfile(profile_id=f"p-{user}", user_id=user, content="x",
                         last_modified_timestamp=NOW, generated_from_request_id="r")],
        )  # fmt: skip
    with pytest.raises(ValidationError, match="user_ids must be a list"):
        rx.update_all_profiles_status(None, None, user_ids="ab")  # type: ignore[arg-type]
    for call in (
        lambda: rx.delete_profiles_by_ids("p-a"),  # type: ignore[arg-type]
        lambda: rx.delete_requests_by_ids("r1"),  # type: ignore[arg-type]
        lambda: rx.get_interactions_by_request_ids("r1"),  # type: ignore[arg-type]
        lambda: rx.delete_user_playbooks_by_ids("12"),  # type: ignore[arg-type]
        lambda: rx.delete_agent_playbooks_by_ids("12"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationError, match="must be a list"):
            call()
    assert sorted(p.user_id for p in rx.get_all_profiles(10)) == ["a", "ab", "b"]
    assert rx.delete_profiles_by_ids([]) == 0


def test_copy_never_creates_or_migrates_its_source(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    unrelated = tmp_path / "unrelated.db"
    sqlite3.connect(unrelated).execute("CREATE TABLE x (a)").connection.close()
    for source, problem in ((missing, "no SQLite file"), (unrelated, "reflexio_store")):
        result = subprocess.run(
            [sys.executable, "-m", "reflexio_store.cli", "copy", "--from", f"sqlite:///{source}",
             "--to", f"sqlite:///{tmp_path / 'target.db'}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0, result.stdout
        assert problem in result.stderr, result.stderr
    assert not missing.exists()
    with sqlite3.connect(unrelated) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["x"]
