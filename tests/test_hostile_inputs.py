"""Every public Store operation, driven with generated hostile arguments on SQLite and PostgreSQL.

The operations are enumerated from the Store class (a new operation is covered without editing
this file); each parameter gets a strategy from its name and annotation, mixed with hostile
values: lone surrogates, NUL, huge integers, 2**63, 1e308/NaN/inf, wrong types, nested lists,
extreme datetimes and odd JSON. Each generated call runs on both databases, and the test asserts:

- only ReflexioStoreError subclasses escape (no raw driver or Python exception);
- the outcome class (ok, or which error) is the same on both databases;
- a refused write changes no row (row counts of every table before and after).

Derandomized and bounded: HOSTILE_EXAMPLES calls (5,000 by default; the environment variable
REFLEXIO_HOSTILE_EXAMPLES overrides it) run on each database, in well under a minute.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import os
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select, text, update

from reflexio_store import SessionFactory, security
from reflexio_store.errors import ReflexioStoreError
from reflexio_store.models import Organization
from reflexio_store.models.base import Base
from reflexio_store.store import Store
from reflexio_store.store._operation import Operation

HOSTILE_EXAMPLES = int(os.environ.get("REFLEXIO_HOSTILE_EXAMPLES", "5000"))

# -- the operations ---------------------------------------------------------------------------


def public_operations() -> dict[str, Operation[Any, Any]]:
    """Every operation declared on Store (through its mixins), by name."""
    found: dict[str, Operation[Any, Any]] = {}
    for cls in reversed(Store.__mro__):
        for name, attr in vars(cls).items():
            if isinstance(attr, Operation) and not name.startswith("_"):
                found[name] = attr
    return dict(sorted(found.items()))


OPERATIONS = public_operations()

# -- hostile values ---------------------------------------------------------------------------

PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))
LONG_KEY = "é" * 1400  # 2,800 bytes: more than a PostgreSQL b-tree index entry holds
HUGE_TEXT = "x" * 1_000_001


class Opaque:
    """An object no operation accepts; its repr is stable, so the derandomized seed is too."""

    def __repr__(self) -> str:
        return "Opaque()"


OPAQUE = Opaque()


class DayLongOffset(tzinfo):
    """A tzinfo whose offset is 25 hours: datetime.utcoffset() itself raises ValueError."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=25)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def __repr__(self) -> str:
        return "DayLongOffset()"


class ShiftyStr(str):
    """Text whose __str__ returns something else (here a NUL); its characters are what count."""

    def __str__(self) -> str:
        return "\x00"


HOSTILE_SCALARS: list[Any] = [
    None,
    "",
    " ",
    "a\ud800b",
    "\udfff",
    "x\x00y",
    "\x00",
    LONG_KEY,
    HUGE_TEXT,
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**400,
    True,
    False,
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    5e-324,
    b"bytes",
    bytearray(b"x"),
    OPAQUE,
    {"a": 1},
    {1: "x"},
    [["u1"]],
    [[1]],
    [],
    [None],
    [5],
    ["u1", ["u2"]],
    ("u1",),
    {"u1"},
    datetime(1, 1, 1, tzinfo=PLUS_14),
    datetime(9999, 12, 31, 23, tzinfo=MINUS_14),
    datetime(2026, 1, 1),
    date(2026, 1, 1),
    timedelta(days=-1),
    timedelta(days=10**6),
    # Array-likes where a word or a list is expected: `in` and `==` on them are element-wise.
    np.array(["u1", "u2"]),
    np.array(["strong"]),
    np.array(5),
    np.array([1.0, 2.0]),
    range(10**20),
    ShiftyStr("u1"),
]

ALPHABET = list("ab Z9é-_'\"\\%/+.:語\u2028\x00\ud800\udc00")
hostile_text = st.text(alphabet=st.sampled_from(ALPHABET), max_size=6)
hostile = st.one_of(st.sampled_from(HOSTILE_SCALARS), hostile_text)

KEYS = ["u1", "u2", "r1", "s1", "p1", "org1", "run-1", "lock", "svc", "name", "v1", "x"]
keys = st.one_of(st.sampled_from(KEYS), hostile_text)
texts = st.one_of(st.sampled_from(["hello dark mode", "Europe/Berlin", "C++", "-dark", "x"]), keys)
small_ints = st.integers(min_value=-2, max_value=6)


def _timezones() -> st.SearchStrategy[timezone]:
    return st.integers(min_value=-14 * 60, max_value=14 * 60).map(
        lambda m: timezone(timedelta(minutes=m))
    )


datetimes = st.one_of(
    st.datetimes(timezones=st.one_of(st.just(UTC), _timezones())),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=PLUS_14),
            datetime(9999, 12, 31, 23, tzinfo=MINUS_14),
            datetime(1, 1, 1, 14, tzinfo=PLUS_14),
            datetime(9999, 12, 31, 9, 59, tzinfo=MINUS_14),
            datetime.max.replace(tzinfo=UTC),
            datetime.min.replace(tzinfo=UTC),
        ]
    ),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.5, -0.5, 10**400, 2**63, 1e308, 86400 * 365 * 11]),
)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.sampled_from([10**400, b"x", {1, 2}, datetime(2026, 1, 1, tzinfo=UTC), "\x00", "\ud800"]),
)
json_keys = st.one_of(hostile_text, st.sampled_from([1, None, 2.5, True, ("t",)]))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(json_keys, inner, max_size=3)
    ),
    max_leaves=6,
)
json_objects = st.one_of(
    st.dictionaries(json_keys, json_values, max_size=4),
    st.sampled_from([{}, {"k": "v"}, {"deep": [[[[[[[[[[1]]]]]]]]]]}]),
)


def embeddings(dims: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.just([0.5] * dims),
        st.builds(lambda x: [x] + [0.25] * (dims - 1), floats),
        st.sampled_from(
            [
                [0.0] * dims,
                [0.5] * (dims - 1),
                [[0.5] * dims],
                ["0.5"] * dims,
                [1e39] * dims,
                [10**400] * dims,
                "0.5",
                {"a": 1},
            ]
        ),
    )


STATUSES = ["current", "pending", "archived", "merged", "Current", "nope"]
REVIEW = ["pending", "approved", "rejected", "APPROVED"]


def _status_values(values: list[str]) -> st.SearchStrategy[Any]:
    one = st.one_of(st.sampled_from(values), hostile)
    return st.one_of(one, st.lists(one, max_size=3))


# Fields of the records that add_* and update_* take (unknown ones are refused: also tested).
RECORD_FIELDS: dict[str, Callable[[int], st.SearchStrategy[Any]]] = {
    "user_id": lambda d: keys,
    "content": lambda d: texts,
    "profile_id": lambda d: keys,
    "custom_features": lambda d: json_objects,
    "extractor_names": lambda d: st.one_of(st.lists(keys, max_size=2), hostile),
    "tags": lambda d: st.one_of(st.lists(keys, max_size=2), hostile),
    "source": lambda d: keys,
    "status": lambda d: st.one_of(st.sampled_from(STATUSES), hostile),
    "expires_at": lambda d: datetimes,
    "created_at": lambda d: datetimes,
    "embedding": embeddings,
    "playbook_name": lambda d: keys,
    "agent_version": lambda d: keys,
    "trigger": lambda d: texts,
    "blocking_issue": lambda d: json_objects,
    "playbook_status": lambda d: st.one_of(st.sampled_from(REVIEW), hostile),
    "playbook_metadata": lambda d: json_objects,
    "source_interaction_ids": lambda d: st.one_of(st.lists(small_ints, max_size=2), hostile),
    "request_id": lambda d: keys,
    "session_id": lambda d: keys,
    "role": lambda d: keys,
    "tools_used": lambda d: st.one_of(st.lists(json_values, max_size=2), hostile),
    "interactions": lambda d: st.lists(records("interaction", d), max_size=2),
    "unknown_field": lambda d: st.just(1),
}
BASE_RECORDS = {
    "profiles": {"user_id": "u1", "content": "likes dark mode"},
    "playbooks": {"playbook_name": "name", "content": "be brief"},
    "requests": {"user_id": "u1"},
    "interactions": {"role": "user", "content": "hello"},
    "interaction": {"role": "user", "content": "hello"},
    "changes": {"content": "changed"},
}


def records(kind: str, dims: int) -> st.SearchStrategy[Any]:
    """A record mapping: a valid base, with a few fields replaced or added (maybe hostile)."""
    base = BASE_RECORDS[kind]
    names = sorted(RECORD_FIELDS)
    return st.one_of(
        st.lists(st.sampled_from(names), max_size=3, unique=True).flatmap(
            lambda chosen: st.fixed_dictionaries(
                {
                    **{k: st.just(v) for k, v in base.items()},
                    **{n: RECORD_FIELDS[n](dims) for n in chosen},
                }
            )
        ),
        hostile,
    )


def parameter_strategy(op_name: str, name: str, annotation: str, dims: int) -> Any:
    """A strategy for one parameter, from its name and annotation, mixed with hostile values."""
    a = annotation
    if name == "consistency":
        good: Any = st.sampled_from(["eventual", "strong"])
    elif name in ("profiles", "playbooks", "requests", "interactions") or name == "changes":
        kind = "changes" if name == "changes" else name
        good = (
            st.lists(records(kind, dims), max_size=3) if name != "changes" else records(kind, dims)
        )
    elif "Sequence[Mapping" in a:
        good = st.lists(records("interaction", dims), max_size=2)
    elif name == "state":
        good = st.fixed_dictionaries(
            {"status": st.one_of(st.just("running"), keys)},
            optional={
                "pipeline_id": keys,
                "current_step_index": st.one_of(small_ints, hostile),
                "metadata": json_objects,
                "pipeline_context": json_objects,
                "created_at": datetimes,
                "nope": st.just(1),
            },
        )
    elif name == "limits":
        good = st.dictionaries(
            st.sampled_from(
                ["profiles", "requests", "interactions", "nope", "REFLEXIO_ROW_LIMIT_PROFILES"]
            ),
            st.one_of(small_ints, hostile),
            max_size=2,
        )
    elif name == "settings":
        good = st.one_of(st.none(), st.sampled_from([OPAQUE, {"profiles": 1}]))
    elif "Embedding" in a or "Sequence[float]" in a:
        good = embeddings(dims)
    elif "ReviewStatus" in a:
        good = _status_values(REVIEW)
    elif "Status" in a:
        good = _status_values(STATUSES)
    elif name == "mode":
        good = st.sampled_from(["text", "vector", "hybrid", None, "TEXT"])
    elif "timedelta" in a:
        good = st.one_of(floats, st.sampled_from([timedelta(seconds=5), timedelta(0)]))
    elif "Sequence[int]" in a:
        good = st.lists(st.one_of(small_ints, hostile), max_size=3)
    elif "Sequence[str]" in a and "str |" not in a.replace("str | None", ""):
        good = st.lists(keys, max_size=3)
    elif "Sequence[str]" in a:
        good = st.one_of(keys, st.lists(keys, max_size=3))
    elif "Sequence[Any]" in a:
        good = st.lists(json_values, max_size=3)
    elif "Mapping" in a:
        good = json_objects
    elif "datetime" in a:
        good = datetimes
    elif a.startswith("bool"):
        good = st.booleans()
    elif a.startswith("float"):
        good = floats
    elif a.startswith("int"):
        if name == "limit":
            good = st.integers(min_value=-1, max_value=20)
        elif name in ("top_k", "ef_search"):
            good = st.integers(min_value=0, max_value=2000)
        else:
            good = small_ints
    elif name in ("query", "content"):
        good = texts
    elif name == "password":
        good = st.sampled_from(["pw", "secret\ud800", "a" * 1025, "\x00"])
    elif name == "token":
        good = st.sampled_from(["rxs_x", "tok\ud800en"])
    else:
        good = keys
    return st.one_of(good, good, hostile)


@dataclass(frozen=True)
class Call:
    op: str
    args: dict[str, Any]

    def __repr__(self) -> str:
        shown = {
            k: (v if len(repr(v)) < 80 else f"{repr(v)[:80]}...") for k, v in self.args.items()
        }
        return f"{self.op}(**{shown!r})"


def calls(dims: int) -> dict[str, st.SearchStrategy[Call]]:
    """A strategy of calls per operation."""

    def for_op(name: str) -> st.SearchStrategy[Call]:
        params = list(inspect.signature(OPERATIONS[name].fn).parameters.values())[1:]
        required = {
            p.name: parameter_strategy(name, p.name, str(p.annotation), dims)
            for p in params
            if p.default is inspect.Parameter.empty
        }
        optional = {
            p.name: parameter_strategy(name, p.name, str(p.annotation), dims)
            for p in params
            if p.default is not inspect.Parameter.empty
        }
        return st.fixed_dictionaries(required, optional=optional).map(lambda a: Call(name, a))

    return {name: for_op(name) for name in OPERATIONS}


# -- the two databases ------------------------------------------------------------------------

TABLES = Base.metadata.sorted_tables
SERIAL = [(t, t.autoincrement_column) for t in TABLES if t.autoincrement_column is not None]


class Side:
    """One database: its store, seed rows, row counts and id sequences."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.store = Store(factory)
        self.counts: tuple[int, ...] = ()
        self.writes = 0
        self.sequences: list[str] = []
        event.listen(factory.writer_engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        # Generated batches are small, so PostgreSQL's COPY path (16+ profiles) is not taken:
        # every row change goes through one of these statements.
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.writes += 1

    def row_counts(self) -> tuple[int, ...]:
        statement = select(*[select(func.count()).select_from(t).scalar_subquery() for t in TABLES])
        with self.factory.writer_engine.connect() as conn:
            return tuple(conn.execute(statement).one())

    def start(self) -> None:
        """The seed rows on a fresh database, and their row counts."""
        self.factory.ensure_schema()
        self.seed()
        self.counts = self.row_counts()

    def next_ids(self) -> list[int]:
        """The id each table's next insert gets (SQLite: one past the highest, unless the table
        keeps an AUTOINCREMENT sequence)."""
        statement = select(
            *[select(func.coalesce(func.max(c), 0) + 1).scalar_subquery() for _, c in SERIAL]
        )
        with self.factory.writer_engine.connect() as conn:
            after_max = list(conn.execute(statement).one())
            kept: dict[str, int] = {}
            if conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
            ).first():
                kept = dict(conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all())
        return [
            max(n, kept.get(t.name, 0) + 1) for (t, _), n in zip(SERIAL, after_max, strict=True)
        ]

    def set_next_ids(self, next_ids: list[int]) -> None:
        """PostgreSQL: point every sequence at `next_ids` (sequences never go back by themselves,
        and a failed INSERT consumes a value), so both databases hand out the same ids."""
        with self.factory.writer_engine.begin() as conn:
            if not self.sequences:
                schema = self.factory.storage.schema
                self.sequences = [
                    conn.execute(
                        text("SELECT pg_get_serial_sequence(:t, :c)"),
                        {"t": f'"{schema}"."{table.name}"', "c": column.name},
                    ).scalar_one()
                    for table, column in SERIAL
                ]
            calls = ", ".join(f"setval(:s{i}, :n{i}, false)" for i in range(len(SERIAL)))
            params = {f"s{i}": name for i, name in enumerate(self.sequences)}
            params.update({f"n{i}": n for i, n in enumerate(next_ids)})
            conn.execute(text(f"SELECT {calls}"), params)

    def seed(self) -> None:
        s = self.store
        dims = self.factory.storage.embedding_dimensions
        vector = [0.5] * dims
        s.add_profiles(
            [
                {"profile_id": "p1", "user_id": "u1", "content": "dark mode", "tags": ["x"]},
                {
                    "profile_id": "p2",
                    "user_id": "u2",
                    "content": "Europe/Berlin",
                    "status": "current",
                    "embedding": vector,
                },
            ]
        )
        s.add_user_playbooks(
            [{"user_id": "u1", "playbook_name": "name", "content": "be brief", "embedding": vector}]
            * 2
        )
        s.add_agent_playbooks(
            [{"playbook_name": "name", "agent_version": "v1", "content": "c"}] * 2
        )
        s.add_request(
            "u1", [{"role": "user", "content": "hello"}], request_id="r1", session_id="s1"
        )
        org = s.create_organization("org1")
        with self.factory.writer() as session:
            session.execute(
                update(Organization).where(Organization.id == org.id).values(password_hash=PW_HASH)
            )
        s.save_state("run-1", {"status": "running", "metadata": {"k": "v", "n": [1, 2]}})
        s.upsert_operation_state("svc", {"k": 1})
        job = s.create_optimization_job(playbook_name="name")
        s.add_optimization_candidate(job.id, "candidate")
        s.save_evaluation_result("s1", "eval", embedding=vector)


PW_HASH = ""


@dataclass
class Tally:
    examples: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    raw: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    partial_writes: list[str] = field(default_factory=list)
    per_op: Counter[str] = field(default_factory=Counter)
    syncs: int = 0


def _outcome(side: Side, call: Call, tally: Tally) -> str:
    try:
        result = getattr(side.store, call.op)(**call.args)
        if isinstance(result, Iterator):
            list(result)
    except ReflexioStoreError as exc:
        return type(exc).__name__
    except Exception as exc:
        tally.raw.append(
            f"{side.factory.backend}: {call!r} -> {type(exc).__name__}: {str(exc)[:200]}"
        )
        return f"raw {type(exc).__name__}"
    return "ok"


def _first_per_kind(lines: list[str]) -> list[str]:
    """One line per (database, operation, exception type): the report stays readable."""
    seen: dict[tuple[str, str, str], str] = {}
    for line in lines:
        backend, rest = line.split(": ", 1)
        kind = (backend, rest.split("(", 1)[0], rest.rsplit(" -> ", 1)[-1].split(":", 1)[0])
        seen.setdefault(kind, line)
    return list(seen.values())


@pytest.fixture
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap password hashing for this test only: thousands of calls, a few of them hash."""
    monkeypatch.setattr(security, "SCRYPT_N", 2**4)


@pytest.mark.postgres
def test_hostile_inputs_only_our_errors_and_the_same_answer_on_both(
    sqlite_factory: SessionFactory, pg_factory: SessionFactory, fast_scrypt: None
) -> None:
    global PW_HASH
    PW_HASH = security.hash_password("pw")
    sides = [Side(sqlite_factory), Side(pg_factory)]
    for side in sides:
        side.start()
    dims = sqlite_factory.storage.embedding_dimensions
    assert dims == pg_factory.storage.embedding_dimensions
    tally = Tally()

    per_op = calls(dims)
    names = sorted(per_op)

    @settings(
        max_examples=-(-HOSTILE_EXAMPLES // len(OPERATIONS)),
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        # Every example calls every operation once, so each gets its share whatever the
        # generator favours; hypothesis generates the arguments.
        for name in names:
            check(data.draw(per_op[name]))

    def check(call: Call) -> None:
        tally.examples += 1
        tally.per_op[call.op] += 1
        began = [side.writes for side in sides]
        results = [_outcome(side, call, tally) for side in sides]
        tally.outcomes[results[0]] += 1
        if results[0] != results[1]:
            tally.disagreements.append(f"{call!r}: sqlite {results[0]}, postgresql {results[1]}")
        if OPERATIONS[call.op].route != "write":
            return
        unaligned = False
        for side, result, before in zip(sides, results, began, strict=True):
            if side.writes == before:
                continue  # no INSERT, UPDATE or DELETE was sent: no row can have changed
            counts = side.row_counts()
            if result != "ok" and counts != side.counts:
                tally.partial_writes.append(f"{side.factory.backend}: {call!r} -> {result}")
            shrank = any(b > a for b, a in zip(side.counts, counts, strict=True))
            unaligned = unaligned or shrank or result != "ok"
            side.counts = counts
        if unaligned:
            # SQLite reuses the highest id after a delete and does not consume ids in a failed
            # INSERT; PostgreSQL sequences do neither. Align them so later calls by id mean the
            # same on both databases.
            sides[1].set_next_ids(sides[0].next_ids())
            tally.syncs += 1

    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    summary = (
        f"{tally.examples} examples per database in {elapsed:.1f} s; outcomes "
        f"{dict(tally.outcomes.most_common())}; {len(tally.raw)} raw exceptions, "
        f"{len(tally.disagreements)} disagreements, {len(tally.partial_writes)} partial writes; "
        f"{tally.syncs} id syncs"
    )
    print(summary)
    untried = sorted(set(OPERATIONS) - set(tally.per_op))
    problems = _first_per_kind(tally.raw) + tally.disagreements[:40] + tally.partial_writes[:20]
    assert not problems, summary + "\n" + "\n".join(problems)
    assert tally.examples >= HOSTILE_EXAMPLES, summary
    assert not untried, f"operations never called: {untried}"


def _distinct_words(size: int) -> str:
    """About `size` bytes of short distinct words: the text whose tsvector is largest."""
    words, used, i = [], 0, 0
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    while True:
        n, word = i, ""
        while True:
            n, r = divmod(n, 36)
            word = digits[r] + word
            if not n:
                break
        if used + len(word) + 1 > size:
            return " ".join(words)
        words.append(word)
        used += len(word) + 1
        i += 1


def test_the_largest_searched_text_is_stored_on_both(factory: SessionFactory) -> None:
    """Searched fields are capped so PostgreSQL's tsvector (1 MB) takes what SQLite takes."""
    from reflexio_store.errors import ValidationError
    from reflexio_store.validation import MAX_SEARCHED_BYTES

    store = Store(factory)
    text = _distinct_words(MAX_SEARCHED_BYTES)
    store.add_request("u", [{"content": text}])
    half = _distinct_words(MAX_SEARCHED_BYTES // 2)
    store.add_profiles([{"user_id": "u", "content": half, "expanded_terms": half}])
    third = _distinct_words(MAX_SEARCHED_BYTES // 3)
    store.add_user_playbooks(
        [{"playbook_name": "p", "content": third, "trigger": third, "expanded_terms": third}]
    )
    with pytest.raises(ValidationError, match="content is larger than"):
        store.add_request("u", [{"content": text + " more"}])


# -- statements too large for the database, nested mappings (found by a fuzzing campaign) ----


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def test_must_contain_filters_are_capped(store: Store) -> None:
    from reflexio_store.errors import ValidationError

    assert store.list_profiles(tags=_ids("t", 100)) == []
    with pytest.raises(ValidationError, match="at most 100 values"):
        store.list_profiles(tags=_ids("t", 101))
    with pytest.raises(ValidationError, match="at most 100 values"):
        store.count_profiles(extractor_name=_ids("e", 1000))


def test_a_statement_too_large_is_bad_input_not_an_outage(store: Store) -> None:
    """Too many bound values (PostgreSQL: 65,535; SQLite: its variable limit) or an expression
    too deep (SQLite) is a ValidationError, and a replica that refused nothing stays up."""
    from reflexio_store.errors import ValidationError

    store.save_state("r1", {"status": "x"})
    calls: list[Callable[[], Any]] = [
        lambda: store.search_interactions(
            "hi", user_id=_ids("u", 50_000), request_id=_ids("r", 50_000), role=_ids("x", 50_000)
        ),
    ]
    if store.factory.backend == "postgresql":
        calls.append(
            lambda: store.list_profiles(user_id=_ids("u", 40_000), source=_ids("s", 40_000))
        )
    else:
        calls.append(lambda: store.list_runs(metadata_filter={f"k{i}": i for i in range(500)}))
    for call in calls:
        with pytest.raises(ValidationError, match="larger than the database takes"):
            call()
    for replica in store.factory.replicas.replicas:
        assert replica.health.state == "up" and replica.health.failures == 0


@pytest.mark.parametrize(
    "nested",
    [types.MappingProxyType({"b": 1}), collections.UserDict(b=1), collections.ChainMap({"b": 1})],
    ids=["mappingproxy", "UserDict", "ChainMap"],
)
def test_nested_mappings_that_are_not_dicts_are_refused(store: Store, nested: Any) -> None:
    from reflexio_store.errors import ValidationError

    with pytest.raises(ValidationError, match="must be a dict"):
        store.upsert_operation_state("svc", {"a": nested})
    with pytest.raises(ValidationError, match="must be a dict"):
        store.save_state("r2", {"status": "x", "metadata": {"a": nested}})
    assert store.load_state("r2") is None and store.get_operation_state("svc") is None


# -- array-likes, endless iterables, deep filters, odd tzinfos (fuzzing findings) ------------


def test_array_likes_where_a_word_is_expected_are_refused(store: Store) -> None:
    from reflexio_store.errors import ValidationError

    with pytest.raises(ValidationError, match="Unknown consistency ndarray"):
        store.get_profile("p", consistency=np.array(["strong"]))
    with pytest.raises(ValidationError, match="Unknown search mode ndarray"):
        store.search_profiles("hi", mode=np.array(["text", "hybrid"]))
    with pytest.raises(ValidationError, match="state\\['run_id'\\] must be text"):
        store.save_state("r1", {"run_id": np.array(["r1", "r2"]), "status": "x"})
    with pytest.raises(ValidationError, match="interactions must be a list of mappings"):
        store.add_requests([{"user_id": "u", "interactions": np.array([{"content": "x"}])}])
    with pytest.raises(ValidationError, match="interactions must be a list of mappings, got str"):
        store.add_requests([{"user_id": "u", "interactions": "hello"}])
    assert store.load_state("r1") is None and store.count_requests() == 0


def test_iterables_are_read_only_up_to_the_batch_limit(store: Store) -> None:
    """An endless iterator is refused after MAX_BATCH + 1 items instead of hanging the call;
    range(10**20) (no len()) and a 0-d array are refused too."""
    from reflexio_store.errors import ValidationError
    from reflexio_store.validation import MAX_BATCH

    endless = (f"p{i}" for i in itertools.count())
    with pytest.raises(ValidationError, match=f"more than {MAX_BATCH} items"):
        store.get_profiles_by_ids(endless)
    assert next(endless) == f"p{MAX_BATCH + 1}"  # read no further than the limit
    with pytest.raises(ValidationError, match=f"more than {MAX_BATCH} items"):
        store.delete_requests(range(10**20))
    with pytest.raises(ValidationError, match="must be a list, got ndarray"):
        store.delete_requests(np.array(5))
    assert store.get_profiles_by_ids(np.array(["p1", "p2"])) == []


def _nested(depth: int) -> dict[str, Any]:
    pattern: Any = "leaf"
    for _ in range(depth - 1):
        pattern = [pattern]
    return {"k": pattern}


def test_metadata_filters_are_capped_in_depth(store: Store) -> None:
    from reflexio_store.errors import ValidationError
    from reflexio_store.validation import MAX_FILTER_DEPTH

    store.save_state("deep", {"status": "done", "metadata": _nested(MAX_FILTER_DEPTH)})
    found = store.list_runs(metadata_filter=_nested(MAX_FILTER_DEPTH))
    assert [run["run_id"] for run in found] == ["deep"]
    with pytest.raises(ValidationError, match=f"deeper than {MAX_FILTER_DEPTH} levels"):
        store.list_runs(metadata_filter=_nested(MAX_FILTER_DEPTH + 1))
    with pytest.raises(ValidationError, match=f"deeper than {MAX_FILTER_DEPTH} levels"):
        store.list_runs(metadata_filter=_nested(63))


def test_a_tzinfo_with_an_impossible_offset_is_refused(store: Store) -> None:
    from reflexio_store.errors import ValidationError

    when = datetime(2026, 1, 1, tzinfo=DayLongOffset())
    with pytest.raises(ValidationError, match="created_at has a tzinfo whose UTC offset"):
        store.save_state("r1", {"status": "x", "created_at": when})
    assert store.load_state("r1") is None


def test_text_subclasses_are_stored_by_their_characters(store: Store) -> None:
    """A str subclass is stored as the characters that were checked, whatever its __str__."""
    store.save_state(ShiftyStr("r1"), {"status": ShiftyStr("running")})
    assert store.load_state("r1") == store.load_state(ShiftyStr("r1"))
    state = store.load_state("r1")
    assert state is not None and state["status"] == "running" and type(state["status"]) is str
