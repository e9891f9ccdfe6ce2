"""SQLite: integer ids are never reused (AUTOINCREMENT), as PostgreSQL's sequences

Without AUTOINCREMENT SQLite gives a new row max(id) + 1, so deleting the newest row hands its
id to the next insert. A reader that remembers the last id it processed (Reflexio's watermarks)
would then skip the new row. PostgreSQL sequences never go back; now SQLite does not either.

SQLite cannot add AUTOINCREMENT to an existing table, so each table with an integer key is
rebuilt (SQLite's documented procedure): renamed aside, created again with AUTOINCREMENT, its
rows copied with their ids (so full-text rowids, foreign keys and vector-index keys still
match), the old table dropped, and its indexes and triggers (full-text sync, vector change log)
created again from their stored SQL. The rename runs with legacy_alter_table=ON and foreign keys
off (env.py turns them off before the migration's transaction): otherwise SQLite would point
the child tables' foreign keys at the renamed table, and dropping it would delete their rows by
ON DELETE CASCADE. The migration checks both, and fails (rolling back) if the rebuild leaves any
foreign key broken that was not broken before (rows orphaned earlier, e.g. by a tool that ran with
foreign keys off, are left as they were).

An id already reused before this revision cannot be told apart; the next id starts above the
highest one present, and, for the five tables with embeddings, above the highest id the vector
change log (revision 0006) has seen inserted, so the newest row deleted before the upgrade does
not hand its id out again either.

PostgreSQL: nothing to do.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

import re
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection

from alembic import context, op
from reflexio_store.errors import ConfigurationError, SchemaNotReadyError

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "organizations": "id",
    "api_tokens": "id",
    "profiles": "id",
    "profile_change_logs": "id",
    "interactions": "interaction_id",
    "user_playbooks": "user_playbook_id",
    "agent_playbooks": "agent_playbook_id",
    "playbook_aggregation_change_logs": "id",
    "agent_success_evaluation_results": "id",
    "playbook_optimization_jobs": "id",
    "playbook_optimization_candidates": "id",
    "playbook_optimization_events": "id",
    "playbook_optimization_evaluations": "id",
}


def _with_autoincrement(table: str, key: str, sql: str) -> str:
    # `key INTEGER NOT NULL, ... CONSTRAINT pk_<table> PRIMARY KEY (key)` (revision 0001) becomes
    # `key INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, ...`: the same rowid table on disk.
    sql, constraints = re.subn(rf",\s*CONSTRAINT pk_{table} PRIMARY KEY \({key}\)", "", sql)
    sql, columns = re.subn(
        rf"(\(\s*{key} INTEGER NOT NULL)(,)", r"\1 PRIMARY KEY AUTOINCREMENT\2", sql
    )
    _expect(table, constraints == 1 and columns == 1, sql)
    return sql


def _without_autoincrement(table: str, key: str, sql: str) -> str:
    sql, columns = re.subn(
        rf"(\(\s*{key} INTEGER NOT NULL) PRIMARY KEY AUTOINCREMENT,", r"\1,", sql
    )
    _expect(table, columns == 1 and sql.rstrip().endswith(")"), sql)
    body = sql.rstrip()[:-1].rstrip()
    return f"{body}, \n\tCONSTRAINT pk_{table} PRIMARY KEY ({key})\n)"


def _expect(table: str, ok: bool, sql: str) -> None:
    if not ok:
        raise SchemaNotReadyError(
            f"Revision 0007 expected the table {table} as the earlier revisions created it, and "
            f"found:\n{sql}\nNothing was changed; restore the table's definition or migrate a "
            "copy of the database made by reflexio_store."
        )


def _rebuild(bind: Connection, table: str, new_sql: str) -> None:
    kept = (
        bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        )
        .scalars()
        .all()
    )
    # Generated columns (hidden 2 and 3) are computed again by the new table.
    names = [row[1] for row in bind.exec_driver_sql(f'PRAGMA table_xinfo("{table}")') if not row[6]]
    columns = ", ".join(f'"{name}"' for name in names)
    aside = f"{table}__rebuild"
    bind.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "{aside}"')
    bind.exec_driver_sql(new_sql)
    bind.exec_driver_sql(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{aside}"')
    bind.exec_driver_sql(f'DROP TABLE "{aside}"')  # its indexes and triggers go with it
    for sql in kept:
        bind.exec_driver_sql(sql)


def _violations(bind: Connection) -> set[tuple[object, ...]]:
    return {tuple(row) for row in bind.exec_driver_sql("PRAGMA foreign_key_check")}


def _seed_sequences(bind: Connection, present: set[str]) -> None:
    """Start each embedded table's AUTOINCREMENT above every id its change log has seen."""
    if "vector_changes" not in present:
        return
    logged = bind.exec_driver_sql(
        "SELECT table_name, max(row_key) FROM vector_changes GROUP BY table_name"
    ).all()
    for table, highest in logged:
        if table not in KEYS or table not in present or highest is None:
            continue
        seq = bind.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
        ).scalar()
        if seq is None:
            bind.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest)
            )
        elif seq < highest:
            bind.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table)
            )


def _rebuild_all(rewrite: Callable[[str, str, str], str], *, seed: bool) -> None:
    if context.is_offline_mode():
        raise ConfigurationError(
            "Revision 0007 rebuilds SQLite tables from their stored definitions and needs the "
            "database itself: run it online (reflexio-store migrate), not with --sql."
        )
    bind = op.get_bind()
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise SchemaNotReadyError(
            "Revision 0007 rebuilds SQLite tables and must run with foreign keys off, or ON "
            "DELETE CASCADE would empty the child tables. Run it through reflexio-store migrate "
            "or alembic upgrade with reflexio_store's env.py, which turn them off first."
        )
    present = set(
        bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars()
    )
    before = _violations(bind)
    bind.exec_driver_sql("PRAGMA legacy_alter_table=ON")
    try:
        for table, key in KEYS.items():
            if table not in present:
                continue
            sql = bind.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).scalar_one()
            _rebuild(bind, table, rewrite(table, key, sql))
    finally:
        bind.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
    broken = sorted(_violations(bind) - before, key=repr)
    if broken:
        raise SchemaNotReadyError(
            f"Revision 0007 would break foreign keys (table, rowid, parent, key): {broken[:10]}; "
            "nothing was changed."
        )
    if seed:
        _seed_sequences(bind, present)


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild_all(_with_autoincrement, seed=True)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild_all(_without_autoincrement, seed=False)
