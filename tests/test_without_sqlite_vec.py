"""A Python whose sqlite3 cannot load extensions, without pysqlite3 (macOS's system Python,
aarch64 where pysqlite3-binary has no wheel): vector search says why it is unavailable and what
to install, text search still works, and `check` names the cause. This machine's own sqlite3
module cannot load extensions; the subprocess hides pysqlite3 to use it. (Where the standard
sqlite3 can load them, the subprocess hides sqlite-vec instead.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
sys.modules["pysqlite3"] = None  # as on a platform without the wheel
sys.modules["pysqlite3.dbapi2"] = None
if sys.argv[2] == "hide-sqlite-vec":
    sys.modules["sqlite_vec"] = None
from reflexio_store import ConfigurationError, SessionFactory, StorageConfigSQLite
from reflexio_store.store import Store
store = Store(SessionFactory.from_config(StorageConfigSQLite(db_url=sys.argv[1])))
store.add_profiles([{"user_id": "u", "content": "likes green tea", "status": "current"}])
print("text", [h.item.content for h in store.search_profiles("tea", mode="text")])
try:
    store.search_profiles(embedding=[0.1] * 512, mode="vector")
except ConfigurationError as exc:
    print("vector", exc)
from reflexio_store.cli import main
sys.exit(main(["check", "--url", sys.argv[1]]))
"""


def test_vector_search_without_sqlite_vec_says_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-vec.db'}"
    loads = hasattr(sqlite3.connect(":memory:"), "enable_load_extension")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, "hide-sqlite-vec" if loads else "as-is"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = " ".join(result.stdout.split())
    assert "text ['likes green tea']" in out, result.stderr
    assert "vector Vector search on SQLite needs the sqlite-vec extension" in out
    cause = (
        "the sqlite-vec package is not installed"
        if loads
        else "cannot load extensions: install pysqlite3-binary"
    )
    assert cause in out
    assert "no such function" not in out + result.stderr
    assert result.returncode == 1
    assert "vector search needs sqlite-vec" in out
