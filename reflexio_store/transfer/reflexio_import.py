"""Reading an existing Reflexio SQLite database (reflexio-ai 0.2.8's `SQLiteStorage` schema) into
a reflexio_store database.

Each Reflexio row becomes the row that `ReflexioStoreStorage` would have written for it (the same
field mapping: structured data split into columns, NULL status meaning current, free-text playbook
metadata, tagged aggregation snapshots), keeping ids, timestamps (to the microsecond Reflexio
stored) and stored embeddings. Full-text entries are rebuilt by the target. Rows are inserted with
"on conflict do nothing", so running the import again adds only what is missing.

Reflexio keeps no schema version number, so the version is recognised by its tables' columns:
a database whose columns differ from the 0.2.8 layout is refused before anything is written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.exc import DBAPIError

from reflexio_store import models as m
from reflexio_store.db_errors import server_reason
from reflexio_store.dialect import insert_or_ignore
from reflexio_store.engines import sqlite_module
from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ConfigurationError, ReflexioStoreError, ValidationError
from reflexio_store.outages import raise_translated
from reflexio_store.sessions import SessionFactory
from reflexio_store.transfer.copy import reset_sequence
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    MAX_TEXT_BYTES,
    require_text,
    shown_key,
    shown_value,
)

SUPPORTED_VERSION = "reflexio-ai 0.2.8"
BATCH = 1_000

Progress = Callable[[str, int, int], None]


class ReflexioSchemaError(ReflexioStoreError):
    """The file is not a Reflexio SQLite database of a version this importer knows."""


# The columns of each table as reflexio-ai 0.2.8's SQLiteStorage creates (and migrates) them.
KNOWN_COLUMNS: dict[str, frozenset[str]] = {
    "requests": frozenset(
        {"request_id", "user_id", "created_at", "source", "agent_version", "session_id"}
    ),
    "interactions": frozenset(
        {
            "interaction_id", "user_id", "content", "request_id", "created_at", "role",
            "user_action", "user_action_description", "interacted_image_url", "shadow_content",
            "expert_content", "tools_used", "embedding",
        }
    ),
    "profiles": frozenset(
        {
            "profile_id", "user_id", "content", "last_modified_timestamp",
            "generated_from_request_id", "profile_time_to_live", "expiration_timestamp",
            "custom_features", "embedding", "source", "status", "extractor_names",
            "expanded_terms", "created_at",
        }
    ),
    "user_playbooks": frozenset(
        {
            "user_playbook_id", "user_id", "playbook_name", "created_at", "request_id",
            "agent_version", "content", "structured_data", "source_interaction_ids", "status",
            "source", "embedding", "expanded_terms",
        }
    ),
    "agent_playbooks": frozenset(
        {
            "agent_playbook_id", "playbook_name", "created_at", "agent_version", "content",
            "structured_data", "playbook_status", "playbook_metadata", "embedding",
            "expanded_terms", "status",
        }
    ),
    "agent_success_evaluation_result": frozenset(
        {
            "result_id", "session_id", "agent_version", "evaluation_name", "is_success",
            "failure_type", "failure_reason", "created_at", "regular_vs_shadow",
            "number_of_correction_per_session", "user_turns_to_resolution", "is_escalated",
            "embedding",
        }
    ),
    "profile_change_logs": frozenset(
        {
            "id", "user_id", "request_id", "created_at", "added_profiles", "removed_profiles",
            "mentioned_profiles",
        }
    ),
    "playbook_aggregation_change_logs": frozenset(
        {
            "id", "created_at", "playbook_name", "agent_version", "run_mode", "added_playbooks",
            "removed_playbooks", "updated_playbooks",
        }
    ),
    "_operation_state": frozenset({"service_name", "operation_state", "updated_at"}),
}  # fmt: skip


@dataclass(frozen=True)
class ImportedTable:
    source_table: str
    target_table: str
    source_rows: int
    imported: int
    present: int
    """How many of the source's keys the target holds after the import."""
    merged: int = 0
    """Rows folded into a newer one with the same unique key (an evaluation's session and name:
    reflexio_store keeps one result per pair, Reflexio appends)."""


# -- reading Reflexio's values ------------------------------------------------------------------


MAX_PROBLEM_CHARS = 300
"""The longest a conversion's own complaint is quoted in an import error."""


def _iso(value: Any, where: str) -> datetime:
    """Reflexio's ISO text timestamps (`...Z` or `+00:00`), to the microsecond."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _epoch(value, where)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{where}: {shown_key(value)} is not an ISO timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _epoch(value: Any, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValidationError(f"{where}: {shown_key(value)} is not epoch seconds") from None


def _json(value: Any, where: str, default: Any = None) -> Any:
    if value is None or value == "":
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: the stored JSON could not be read.") from None


def _shaped(value: Any, kind: type, where: str) -> Any:
    """JSON of the shape the adapter reads back (None allowed): a value of another shape would
    be stored and then fail every read of that row."""
    if value is not None and not isinstance(value, kind):
        raise ValidationError(f"{where}: expected a JSON {kind.__name__}, got {_json_kind(value)}.")
    return value


def _texts(value: Any, where: str) -> list[str]:
    """A JSON list of text (a bare string would be read back as its characters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{where}: expected a JSON list of text, got {_json_kind(value)}.")
    return value


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _text(value: Any) -> str | None:
    """Reflexio writes '' for unset text; reflexio_store keeps what was stored (checked by
    `_converted` like every text value)."""
    return None if value is None else str(value)


class _Rows:
    """Turns Reflexio rows into reflexio_store rows, with the adapter's field mapping."""

    def __init__(self, dimensions: int) -> None:
        from reflexio.models.api_schema.domain import (
            AgentPlaybookSnapshot,
            PlaybookAggregationChangeLog,
            RegularVsShadow,
            StructuredData,
            ToolUsed,
            UserProfile,
        )

        from reflexio_store.integrations.reflexio import convert

        self.dimensions = dimensions
        self.convert = convert
        self.StructuredData = StructuredData
        self.ToolUsed = ToolUsed
        self.UserProfile = UserProfile
        self.Snapshot = AgentPlaybookSnapshot
        self.AggregationLog = PlaybookAggregationChangeLog
        self.verdicts = {v.value for v in RegularVsShadow}

    def embedding(self, value: Any, where: str) -> list[float] | None:
        vector = _json(value, where)
        if not vector:
            return None
        if not isinstance(vector, list) or len(vector) != self.dimensions:
            size = len(vector) if isinstance(vector, list) else "?"
            raise ValidationError(
                f"{where}: the stored embedding has {size} dimensions but the target store is "
                f"configured for {self.dimensions}. Set REFLEXIO_EMBEDDING_DIMENSIONS to {size} "
                "for a new target database."
            )
        return [float(x) for x in vector]

    def verdict(self, value: str | None) -> str | None:
        """An evaluation's regular-vs-shadow verdict: one of Reflexio's values, or None."""
        if value is not None and value not in self.verdicts:
            raise ValidationError(
                f"regular_vs_shadow {shown_value(value)} is not one of {sorted(self.verdicts)}."
            )
        return value

    def status(self, value: Any) -> Status:
        return self.convert.store_status(value or None)

    def structured(self, value: Any, where: str) -> dict[str, Any]:
        data = self.StructuredData(**(_json(value, where, {}) or {}))
        return self.convert.split_structured(data)

    def requests(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"requests {shown_key(r['request_id'])}"
        return {
            "request_id": r["request_id"],
            "user_id": r["user_id"],
            "created_at": _iso(r["created_at"], where),
            "source": _text(r["source"]),
            "agent_version": _text(r["agent_version"]),
            "session_id": _text(r["session_id"]),
        }

    def interactions(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"interactions {r['interaction_id']}"
        tools = _json(r["tools_used"], where, []) or []
        return {
            "interaction_id": r["interaction_id"],
            "request_id": r["request_id"],
            "user_id": r["user_id"],
            "role": _text(r["role"]),
            "content": r["content"] or "",
            "user_action": _text(r["user_action"]),
            "user_action_description": _text(r["user_action_description"]),
            "interacted_image_url": _text(r["interacted_image_url"]),
            "shadow_content": _text(r["shadow_content"]),
            "expert_content": _text(r["expert_content"]),
            "tools_used": [
                self.ToolUsed(**t).model_dump(mode="json") for t in tools if isinstance(t, dict)
            ],
            "embedding": self.embedding(r["embedding"], where),
            "created_at": _iso(r["created_at"], where),
        }

    def profiles(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"profiles {shown_key(r['profile_id'])}"
        return {
            "profile_id": r["profile_id"],
            "user_id": r["user_id"],
            "content": r["content"] or "",
            "custom_features": _shaped(_json(r["custom_features"], where), dict, where),
            "extractor_names": _texts(_json(r["extractor_names"], where, []) or [], where),
            "source": _text(r["source"]),
            "status": self.status(r["status"]),
            "generated_from_request_id": _text(r["generated_from_request_id"]),
            "profile_time_to_live": _text(r["profile_time_to_live"]),
            "expires_at": _epoch(r["expiration_timestamp"], where),
            "last_modified_at": _epoch(r["last_modified_timestamp"], where),
            "expanded_terms": _text(r["expanded_terms"]),
            "embedding": self.embedding(r["embedding"], where),
            "created_at": _iso(r["created_at"], where),
        }

    def user_playbooks(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"user_playbooks {r['user_playbook_id']}"
        return {
            "user_playbook_id": r["user_playbook_id"],
            "user_id": _text(r["user_id"]),
            "playbook_name": r["playbook_name"] or "",
            "request_id": _text(r["request_id"]),
            "agent_version": _text(r["agent_version"]),
            "content": r["content"] or "",
            **self.structured(r["structured_data"], where),
            "source_interaction_ids": _shaped(
                _json(r["source_interaction_ids"], where, []) or [], list, where
            ),
            "status": self.status(r["status"]),
            "source": _text(r["source"]),
            "expanded_terms": _text(r["expanded_terms"]),
            "embedding": self.embedding(r["embedding"], where),
            "created_at": _iso(r["created_at"], where),
        }

    def agent_playbooks(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"agent_playbooks {r['agent_playbook_id']}"
        return {
            "agent_playbook_id": r["agent_playbook_id"],
            "playbook_name": r["playbook_name"] or "",
            "agent_version": _text(r["agent_version"]),
            "content": r["content"] or "",
            **self.structured(r["structured_data"], where),
            "playbook_status": PlaybookReviewStatus(r["playbook_status"] or "pending"),
            "playbook_metadata": self.convert.metadata_in(r["playbook_metadata"] or ""),
            "status": self.status(r["status"]),
            "expanded_terms": _text(r["expanded_terms"]),
            "embedding": self.embedding(r["embedding"], where),
            "created_at": _iso(r["created_at"], where),
        }

    def agent_success_evaluation_result(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"agent_success_evaluation_result {r['result_id']}"
        return {
            "id": r["result_id"],
            "session_id": r["session_id"],
            "agent_version": _text(r["agent_version"]),
            "evaluation_name": r["evaluation_name"] or "",
            "is_success": bool(r["is_success"]),
            "failure_type": _text(r["failure_type"]),
            "failure_reason": _text(r["failure_reason"]),
            "regular_vs_shadow": self.verdict(_text(r["regular_vs_shadow"]) or None),
            "number_of_correction_per_session": r["number_of_correction_per_session"],
            "user_turns_to_resolution": r["user_turns_to_resolution"],
            "is_escalated": bool(r["is_escalated"]),
            "embedding": self.embedding(r["embedding"], where),
            "created_at": _iso(r["created_at"], where),
        }

    def profile_change_logs(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"profile_change_logs {r['id']}"

        def profiles(name: str) -> list[Any]:
            items = _json(r[name], where, []) or []
            return [self.UserProfile(**p).model_dump(mode="json") for p in items]

        return {
            "id": r["id"],
            "user_id": _text(r["user_id"]),
            "request_id": _text(r["request_id"]),
            "added_profiles": profiles("added_profiles"),
            "removed_profiles": profiles("removed_profiles"),
            "mentioned_profiles": profiles("mentioned_profiles"),
            "created_at": _epoch(r["created_at"], where),
        }

    def playbook_aggregation_change_logs(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"playbook_aggregation_change_logs {r['id']}"
        log = self.AggregationLog(
            id=r["id"],
            created_at=int(r["created_at"]),
            playbook_name=r["playbook_name"],
            agent_version=r["agent_version"],
            run_mode=r["run_mode"],
            added_agent_playbooks=_json(r["added_playbooks"], where, []) or [],
            removed_agent_playbooks=_json(r["removed_playbooks"], where, []) or [],
            updated_agent_playbooks=_json(r["updated_playbooks"], where, []) or [],
        )
        before, after = self.convert.aggregation_lists_in(log)
        return {
            "id": r["id"],
            "playbook_name": _text(r["playbook_name"]),
            "agent_version": _text(r["agent_version"]),
            "run_mode": _text(r["run_mode"]),
            "before": before,
            "after": after,
            "created_at": _epoch(r["created_at"], where),
        }

    def _operation_state(self, r: Mapping[str, Any]) -> dict[str, Any]:
        where = f"_operation_state {shown_key(r['service_name'])}"
        state = _json(r["operation_state"], where, {})
        return {
            "service_name": r["service_name"],
            "state": state if isinstance(state, dict) else {"value": state},
            "updated_at": _iso(r["updated_at"], where),
        }


# Source table -> (target table, source key column): parents before children.
PLAN: list[tuple[str, Table, str]] = [
    ("requests", m.Request.__table__, "request_id"),  # type: ignore[list-item]
    ("interactions", m.Interaction.__table__, "interaction_id"),  # type: ignore[list-item]
    ("profiles", m.Profile.__table__, "profile_id"),  # type: ignore[list-item]
    ("user_playbooks", m.UserPlaybook.__table__, "user_playbook_id"),  # type: ignore[list-item]
    ("agent_playbooks", m.AgentPlaybook.__table__, "agent_playbook_id"),  # type: ignore[list-item]
    (
        "agent_success_evaluation_result",
        m.AgentSuccessEvaluationResult.__table__,  # type: ignore[list-item]
        "result_id",
    ),
    ("profile_change_logs", m.ProfileChangeLog.__table__, "id"),  # type: ignore[list-item]
    (
        "playbook_aggregation_change_logs",
        m.PlaybookAggregationChangeLog.__table__,  # type: ignore[list-item]
        "id",
    ),
    ("_operation_state", m.OperationState.__table__, "service_name"),  # type: ignore[list-item]
]
_TARGET_KEY = {"profiles": "profile_id", "agent_success_evaluation_result": "id"}


def open_reflexio(path: Path) -> sqlite3.Connection:
    """The Reflexio file, read-only, after checking that its layout is one this importer knows."""
    if not path.is_file():
        raise ConfigurationError(f"No Reflexio database at {path}: give the path of its .db file.")
    module = sqlite_module()
    try:
        # Percent-encoded: a '?', '#' or '%' in the file name would otherwise end the path
        # (and drop mode=ro, creating a stray file).
        conn = module.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        conn.row_factory = module.Row
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except module.DatabaseError:
        raise ReflexioSchemaError(f"{path} is not an SQLite database.") from None
    check_layout(path, tables, lambda t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')})
    return conn  # type: ignore[no-any-return]


def check_layout(path: Path, tables: set[str], columns_of: Callable[[str], set[str]]) -> None:
    missing = [t for t in KNOWN_COLUMNS if t not in tables]
    if len(missing) == len(KNOWN_COLUMNS):
        raise ReflexioSchemaError(
            f"{path} holds none of Reflexio's tables; it is not a Reflexio SQLite database."
        )
    problems = [f"table {t} is missing" for t in missing]
    for table, known in KNOWN_COLUMNS.items():
        if table in missing:
            continue
        found = columns_of(table)
        if extra := sorted(found - known):
            problems.append(f"{table} has columns this importer does not know: {', '.join(extra)}")
        if absent := sorted(known - found):
            problems.append(f"{table} lacks columns: {', '.join(absent)}")
    if problems:
        raise ReflexioSchemaError(
            f"{path} is not in the layout of {SUPPORTED_VERSION}, the Reflexio version this "
            f"importer reads: {'; '.join(problems)}. Open the database once with reflexio-ai "
            "0.2.8 (it migrates older layouts on start), or use the reflexio_store release that "
            "supports your Reflexio version. Nothing was written."
        )


def _read(conn: sqlite3.Connection, table: str, key: str) -> Iterator[list[Mapping[str, Any]]]:
    # Reflexio's TEXT PRIMARY KEY columns allow NULL (SQLite); such a row has no identity to
    # import under, and would stall the keyset paging below.
    nulls = conn.execute(f'SELECT count(*) FROM "{table}" WHERE "{key}" IS NULL').fetchone()[0]  # noqa: S608
    if nulls:
        raise ReflexioSchemaError(
            f"{table} has {nulls} row(s) whose {key} is NULL: they cannot be imported under a "
            f"key. Give them one or delete them in the Reflexio file; nothing was imported."
        )
    # A file built without Reflexio's PRIMARY KEY can repeat a key; paging by key would then
    # skip the repeats that straddle a batch boundary.
    repeated = conn.execute(
        f'SELECT count(*) FROM (SELECT 1 FROM "{table}" GROUP BY "{key}" HAVING count(*) > 1)'  # noqa: S608
    ).fetchone()[0]
    if repeated:
        raise ReflexioSchemaError(
            f"{table} has {repeated} {key} value(s) held by more than one row, so its rows "
            f"cannot be imported one per key. Reflexio declares {key} its PRIMARY KEY: keep one "
            "row per key in the Reflexio file; nothing was imported."
        )
    last: Any = None
    while True:
        # Names come from KNOWN_COLUMNS, never from input.
        query = f'SELECT * FROM "{table}"'  # noqa: S608
        params: tuple[Any, ...] = ()
        if last is not None:
            query += f' WHERE "{key}" > ?'
            params = (last,)
        rows = conn.execute(f'{query} ORDER BY "{key}" LIMIT {BATCH}', params).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][key]


def import_reflexio(
    path: Path, target: SessionFactory, *, progress: Progress | None = None
) -> list[ImportedTable]:
    """Import every table of the Reflexio SQLite file at `path` into `target` (migrated).

    All or nothing, in one transaction: every row is converted and checked as its batch is
    written, and a row that cannot be converted, or that the target refuses, rolls everything
    back. Rows are streamed a batch at a time (memory does not grow with the file); only the
    evaluation results (merged per session and name) and the requests that interactions point at
    but Reflexio no longer has are collected first."""
    conn = open_reflexio(path)
    failure: str | None = None
    try:
        convert = _Rows(target.storage.embedding_dimensions)
        orphans = _orphan_requests(conn)
        try:
            with target.writer_connection() as dst:
                return [
                    _import_table(conn, dst, target, convert, source, table, key, orphans, progress)
                    for source, table, key in PLAN
                ]
        except DBAPIError as exc:
            raise_translated(exc, target.storage.writer_url)
            failure = server_reason(exc, target.storage.writer_url)
    finally:
        conn.close()
    raise ValidationError(
        f"The target database refused a row of the Reflexio file ({failure}); nothing was "
        "imported. Fix or remove that row in the file and import again."
    )


_KEY_COLUMNS = frozenset(
    {
        "profile_id", "user_id", "request_id", "session_id", "playbook_name", "agent_version",
        "source", "service_name", "evaluation_name", "generated_from_request_id",
    }
)  # fmt: skip
"""Text columns that are indexed: at most MAX_KEY_BYTES, as PostgreSQL's btree takes them."""


def _converted(convert: _Rows, source: str, key: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """One Reflexio row as a reflexio_store row. A value the conversion cannot take (corrupt
    JSON of the wrong shape, an unknown status, a date out of range) is a ValidationError naming
    the table and the row, before anything is written."""
    problem: str | None = None
    try:
        converted: dict[str, Any] = getattr(convert, source)(row)
        for name, value in converted.items():
            if isinstance(value, str):  # as the Store takes text: no NUL, keys index-sized
                size = MAX_KEY_BYTES if name in _KEY_COLUMNS else MAX_TEXT_BYTES
                require_text(value, name, allow_empty=True, max_bytes=size)
        return converted
    except ValidationError as exc:
        problem = str(exc)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # pydantic's ValidationError is a ValueError; its text is the model's complaint. An
        # enum's complaint quotes the value: only its kind is kept.
        first = str(exc).splitlines()[0] if str(exc) else ""
        problem = f"{type(exc).__name__}" + ("" if "is not a valid" in first else f": {first}")
    problem = problem[:MAX_PROBLEM_CHARS].rstrip(". ")
    raise ValidationError(
        f"Reflexio's {source} row {key}={shown_key(row[key])} cannot be imported: {problem}. "
        "Nothing was imported; fix or remove that row in the Reflexio file."
    )


def _check_explicit_ids(source: str, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Integer keys are kept as Reflexio numbered them; the key's sequence then moves past the
    largest, which must leave room for the ids generated afterwards."""
    from reflexio_store.integrations.reflexio._profiles import MAX_EXPLICIT_ID

    key = _TARGET_KEY.get(source) or next(iter(table.primary_key.columns)).name
    for row in rows:
        value = row.get(key)
        if isinstance(value, int) and not 1 <= value <= MAX_EXPLICIT_ID:
            raise ValidationError(
                f"{source}: the id {value} is outside 1-{MAX_EXPLICIT_ID:,} (ids generated "
                "after it would overflow the key); nothing was imported."
            )


EVALUATIONS = "agent_success_evaluation_result"


def _newest_per_pair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One evaluation result per (session, evaluation name): rows come in id order, and a later
    one replaces an earlier one."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        newest[(row["session_id"], row["evaluation_name"])] = row
    return list(newest.values())


def _orphan_requests(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Reflexio has no foreign key from interactions to requests; ours cascades. An interaction
    whose request is gone gets a request row made from its first interaction, as
    ReflexioStoreStorage does. Only those interactions are read here."""
    orphans: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        "SELECT interaction_id, request_id, user_id, created_at FROM interactions "
        "WHERE request_id NOT IN (SELECT request_id FROM requests WHERE request_id IS NOT NULL) "
        "ORDER BY interaction_id"
    )
    for r in rows:
        if r["request_id"] in orphans:
            continue
        where = f"interactions {shown_key(r['interaction_id'])}"
        for name in ("request_id", "user_id"):
            if r[name] is not None:
                require_text(r[name], f"{where}: {name}", allow_empty=True, max_bytes=MAX_KEY_BYTES)
        orphans[r["request_id"]] = {
            "request_id": r["request_id"],
            "user_id": r["user_id"],
            "created_at": _iso(r["created_at"], where),
            "source": "",
            "agent_version": "",
            "session_id": None,
        }
    return orphans


def _import_table(
    conn: sqlite3.Connection,
    dst: Connection,
    target: SessionFactory,
    convert: _Rows,
    source: str,
    table: Table,
    key: str,
    orphans: dict[str, dict[str, Any]],
    progress: Progress | None,
) -> ImportedTable:
    target_key = _TARGET_KEY.get(source) or next(iter(table.primary_key.columns)).name
    column = table.c[target_key]
    expected = int(conn.execute(f'SELECT count(*) FROM "{source}"').fetchone()[0])  # noqa: S608
    if source == "requests":
        expected += len(orphans)

    def converted() -> Iterator[list[dict[str, Any]]]:
        for rows in _read(conn, source, key):
            batch = [_converted(convert, source, key, row) for row in rows]
            _check_explicit_ids(source, table, batch)
            yield batch
        if source == "requests" and orphans:
            extra = list(orphans.values())
            for start in range(0, len(extra), BATCH):
                yield extra[start : start + BATCH]

    merged = 0
    batches: Iterable[list[dict[str, Any]]] = converted()
    if source == EVALUATIONS:
        every = [row for batch in batches for row in batch]
        newest = _newest_per_pair(every)
        merged = len(every) - len(newest)
        batches = [newest[i : i + BATCH] for i in range(0, len(newest), BATCH)]
    before = int(dst.execute(select(func.count()).select_from(table)).scalar_one())
    total = present = 0
    for rows in batches:
        dst.execute(insert_or_ignore(dst, table, None), rows)
        keys = [row[target_key] for row in rows]
        present += int(
            dst.execute(
                select(func.count()).select_from(table).where(column.in_(keys))
            ).scalar_one()
        )
        total += len(rows)
        if progress is not None:
            progress(table.name, total, max(expected - merged, total))
    if target.backend == "postgresql":
        reset_sequence(dst, table, target.storage.schema)
    after = int(dst.execute(select(func.count()).select_from(table)).scalar_one())
    report = ImportedTable(source, table.name, total + merged, after - before, present, merged)
    if present != total:
        raise ReflexioStoreError(
            f"Importing {source}: {total} rows read but only {present} found in "
            f"{table.name} afterwards. Rows the target already held under other keys but the "
            "same unique values (an evaluation's session and name) were kept as they were."
        )
    return report


__all__ = [
    "KNOWN_COLUMNS",
    "SUPPORTED_VERSION",
    "ImportedTable",
    "ReflexioSchemaError",
    "import_reflexio",
    "open_reflexio",
]
