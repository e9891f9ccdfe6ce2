"""The same random operations against Reflexio's own SQLiteStorage (reflexio-ai 0.2.8, made
importable in a scratch copy) and against ReflexioStoreStorage, on an SQLite file and on
PostgreSQL (searches through the replica): every compared result must be equal.
See tests/support/reflexio_differential.py for what is compared and what is left out."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

pytest.importorskip("reflexio", reason="needs the reflexio extra: pip install -e '.[test]'")

from tests.support.reflexio_reference import run_patched

MARKER = "DIFFERENTIAL-RESULT "


def run_differential(reference: Path, home: Path, *args: str) -> dict[str, Any]:
    module = "tests.support.reflexio_differential"
    return run_patched(reference, home, module, MARKER, *args)  # type: ignore[no-any-return]


def check(report: dict[str, Any], steps: int) -> None:
    assert report["steps"] == steps
    assert report["mismatches"] == [], json.dumps(report["mismatches"][:3], indent=1)[:6000]
    # Most of the 82 methods are exercised: reads after writes of every entity.
    assert len(report["methods"]) >= 35, sorted(report["methods"])
    assert sum(report["methods"].values()) >= steps // 2


def test_same_results_as_reflexio_on_sqlite(reference_path: Path, tmp_path: Path) -> None:
    report = run_differential(reference_path, tmp_path, "sqlite", "300", "11")
    check(report, 300)


@pytest.fixture
def pg_schema_prefix(pg: Any) -> Iterator[str]:
    prefix = f"rxd_{uuid.uuid4().hex[:8]}"
    yield prefix
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    with engine.begin() as conn:
        names = conn.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "%",)
        ).scalars()
        for name in list(names):
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    engine.dispose()


def test_same_results_as_reflexio_on_postgres(
    reference_path: Path, tmp_path: Path, pg: Any, pg_schema_prefix: str
) -> None:
    report = run_differential(
        reference_path,
        tmp_path,
        pg.primary_url,
        "200",
        "21",
        pg_schema_prefix,
        pg.replica_url or pg.primary_url,
    )
    check(report, 200)


def test_reflexio_server_uses_this_store_for_every_organization(
    reference_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "orgs"
    folder.mkdir()
    out = run_patched(
        reference_path,
        tmp_path,
        "tests.support.reflexio_server_hook",
        "HOOK-RESULT ",
        str(folder),
    )
    assert out["registered"] and out["is_ours"] and out["configured"]
    assert out["storage_types"] == ["ReflexioStoreStorage", "ReflexioStoreStorage"]
    assert out["test_and_init"] == [True, "Storage initialized successfully"]
    assert out["org_a_hits"] == ["p1"] and out["org_b_hits"] == []  # one database per org
    assert out["files"] == ["org-a.db", "org-b.db"]


def test_hook_on_a_python_where_reflexios_server_does_not_import() -> None:
    """Unpatched reflexio-ai 0.2.8 on Python < 3.14: one clear error, nothing registered."""
    if sys.version_info >= (3, 14):
        pytest.skip("Reflexio's server imports on 3.14")
    from reflexio_store import ConfigurationError
    from reflexio_store.integrations.reflexio import use_reflexio_store

    with pytest.raises(ConfigurationError, match=r"needs Python 3\.14"):
        use_reflexio_store()
