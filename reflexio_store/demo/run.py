"""`reflexio-store demo`: load a synthetic Reflexio workload through the Store and search it.

By default the demo writes to a fresh SQLite file in a new temporary directory (printed at the
start), never to the real embedded database (~/.reflexio/data/reflexio.db): the demo's rows
would otherwise mix with real data. Pass db_url to use another database; it must not already
hold the demo's rows (the workload's ids are fixed by its seed).

Vectors come from the demo hashing embedder, which is not a language model: similarity here is
word overlap, enough to show vector and hybrid search end to end without any download.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.demo.workload import Workload, WorkloadSize
from reflexio_store.errors import ReflexioStoreError
from reflexio_store.migrations import upgrade
from reflexio_store.sessions import SessionFactory
from reflexio_store.settings import StorageConfigPostgres, StorageConfigSQLite, resolve_storage
from reflexio_store.store import Store
from reflexio_store.urls import parse_database_url

__all__ = [
    "DEMO_USER",
    "DemoReport",
    "IngestStat",
    "SearchResult",
    "execute_demo",
    "run_demo",
]

DEMO_USER = "user-0000"
"""The demo's dark-mode, Rust, Europe/Berlin user (see workload.Workload.personas)."""
_BATCH = 500
_REPEATS = 5  # each search runs this many times after one warm-up; the median is reported


@dataclass
class IngestStat:
    what: str
    rows: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class SearchResult:
    name: str
    entity: str
    mode: str
    filters: str
    latency_ms: float
    hits: list[tuple[str, str, float]]
    """(owner, content, score) of the top hits, best first; owner is the user or playbook name."""


@dataclass
class DemoReport:
    location: str
    migrate_seconds: float
    ingest: list[IngestStat] = field(default_factory=list)
    searches: list[SearchResult] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    runs_filter: str = ""
    runs_latency_ms: float = 0.0
    total_seconds: float = 0.0


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _median_ms(fn: Callable[[], Any]) -> tuple[Any, float]:
    result = fn()  # warm-up: the first call also pays for statement compilation
    samples = []
    for _ in range(_REPEATS):
        result, seconds = _timed(fn)
        samples.append(seconds * 1000)
    return result, statistics.median(samples)


def _batches(rows: Sequence[dict[str, Any]], size: int = _BATCH) -> list[Sequence[dict[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _load(store: Store, workload: Workload, embedder: HashingEmbedder) -> list[IngestStat]:
    stats: list[IngestStat] = []

    requests = list(workload.requests())
    for request in requests:
        for interaction in request["interactions"]:
            interaction["embedding"] = embedder.embed(interaction["content"])
    interactions = sum(len(r["interactions"]) for r in requests)
    _, seconds = _timed(lambda: [store.add_requests(b) for b in _batches(requests)])
    stats.append(IngestStat("requests", len(requests), seconds, f"+ {interactions} interactions"))

    profiles = [p.row for p in workload.profiles()]
    for row in profiles:
        row["embedding"] = embedder.embed(row["content"])
    _, seconds = _timed(lambda: [store.add_profiles(b) for b in _batches(profiles)])
    stats.append(IngestStat("profiles", len(profiles), seconds, "with FTS + vector entries"))

    user_playbooks = list(workload.user_playbooks())
    for row in user_playbooks:
        row["embedding"] = embedder.embed(f"{row['content']} {row['trigger']}")
    _, seconds = _timed(lambda: [store.add_user_playbooks(b) for b in _batches(user_playbooks)])
    stats.append(IngestStat("user playbooks", len(user_playbooks), seconds))

    agent_playbooks = list(workload.agent_playbooks())
    for row in agent_playbooks:
        row["embedding"] = embedder.embed(f"{row['content']} {row['trigger']}")
    _, seconds = _timed(lambda: store.add_agent_playbooks(agent_playbooks))
    stats.append(IngestStat("agent playbooks", len(agent_playbooks), seconds))

    runs = list(workload.workflow_runs())
    _, seconds = _timed(lambda: [store.save_state(r["run_id"], r) for r in runs])
    stats.append(IngestStat("workflow runs", len(runs), seconds, "save_state, one commit each"))
    return stats


def _searches(store: Store, embedder: HashingEmbedder) -> list[SearchResult]:
    specs: list[tuple[str, str, str, str, Callable[[str], Any]]] = [
        ("profiles: 'timezone Berlin'", "profiles", "text", "all users",
         lambda q: store.search_profiles(q, mode="text")),
        ("profiles: 'works in Rust'", "profiles", "vector", "all users",
         lambda q: store.search_profiles(embedding=embedder.embed(q), mode="vector")),
        ("profiles: 'dark mode'", "profiles", "hybrid", f"user_id={DEMO_USER}",
         lambda q: store.search_profiles(q, embedding=embedder.embed(q), user_id=DEMO_USER)),
        ("profiles: 'deploys services'", "profiles", "hybrid", "all users",
         lambda q: store.search_profiles(q, embedding=embedder.embed(q))),
        ("interactions: 'deployment failed'", "interactions", "hybrid", "all users",
         lambda q: store.search_interactions(q, embedding=embedder.embed(q))),
        ("user playbooks: 'meeting times'", "user playbooks", "hybrid", f"user_id={DEMO_USER}",
         lambda q: store.search_user_playbooks(q, embedding=embedder.embed(q), user_id=DEMO_USER)),
        ("agent playbooks: 'confirm timezone'", "agent playbooks", "hybrid", "any review status",
         lambda q: store.search_agent_playbooks(q, embedding=embedder.embed(q))),
    ]  # fmt: skip
    results = []
    for name, entity, mode, filters, run in specs:
        query = name.split("'")[1]
        hits, latency = _median_ms(lambda run=run, query=query: run(query))  # type: ignore[misc]
        results.append(
            SearchResult(
                name=name,
                entity=entity,
                mode=mode,
                filters=filters,
                latency_ms=latency,
                hits=[(_owner(hit.item), hit.item.content, hit.score) for hit in hits[:3]],
            )
        )
    return results


def _owner(item: Any) -> str:
    user = getattr(item, "user_id", None)
    return str(user) if user is not None else str(getattr(item, "playbook_name", ""))


def execute_demo(store: Store, location: str, size: WorkloadSize | None = None) -> DemoReport:
    """Migrate (on first use), load the workload, run the searches; return what happened."""
    started = time.perf_counter()
    workload = Workload(size)
    embedder = HashingEmbedder(store.factory.storage.embedding_dimensions)
    # The first call opens the database and, for SQLite, migrates it to head.
    existing, migrate_seconds = _timed(lambda: store.count_profiles(user_id=DEMO_USER))
    if existing:
        raise ReflexioStoreError(
            f"{location} already holds the demo's profiles; run the demo on a fresh database "
            "(omit --url to get a new temporary one)."
        )
    report = DemoReport(location=location, migrate_seconds=migrate_seconds)
    report.ingest = _load(store, workload, embedder)
    report.searches = _searches(store, embedder)
    metadata_filter = {"tags": ["backfill"], "triggered_by": "schedule"}
    report.runs_filter = f"status='completed', metadata ⊇ {metadata_filter}"
    report.runs, report.runs_latency_ms = _median_ms(
        lambda: store.list_runs(status="completed", metadata_filter=metadata_filter, limit=5)
    )
    report.total_seconds = time.perf_counter() - started
    return report


def _render(console: Console, report: DemoReport) -> None:
    ingest = Table(title="Ingest through the Store API", title_justify="left")
    ingest.add_column("entity")
    ingest.add_column("rows", justify="right")
    ingest.add_column("seconds", justify="right")
    ingest.add_column("rows/s", justify="right")
    ingest.add_column("note", style="dim")
    for stat in report.ingest:
        ingest.add_row(
            stat.what, f"{stat.rows:,}", f"{stat.seconds:.2f}", f"{stat.rate:,.0f}", stat.note
        )
    console.print(ingest)

    timings = Table(title=f"Searches (median of {_REPEATS} after a warm-up)", title_justify="left")
    timings.add_column("search")
    timings.add_column("mode")
    timings.add_column("filter")
    timings.add_column("latency", justify="right")
    timings.add_column("hits", justify="right")
    for result in report.searches:
        timings.add_row(
            result.name,
            result.mode,
            result.filters,
            f"{result.latency_ms:.1f} ms",
            str(len(result.hits)),
        )
    timings.add_row(
        "workflow runs: list_runs", "filter", report.runs_filter,
        f"{report.runs_latency_ms:.1f} ms", str(len(report.runs)),
    )  # fmt: skip
    console.print(timings)

    results = Table(title="Top results", title_justify="left", show_lines=False)
    results.add_column("search")
    results.add_column("#", justify="right")
    results.add_column("user / playbook")
    results.add_column("content")
    results.add_column("score", justify="right")
    for result in report.searches:
        for rank, (owner, content, score) in enumerate(result.hits, start=1):
            name = result.name if rank == 1 else ""
            results.add_row(name, str(rank), owner, content, f"{score:.4f}")
        if not result.hits:
            results.add_row(result.name, "-", "", "[dim](no hits)[/]", "")
    console.print(results)

    runs = Table(title=f"Workflow runs where {report.runs_filter}", title_justify="left")
    for name in ("run_id", "pipeline_name", "status", "step", "batch", "tags"):
        runs.add_column(name)
    for run in report.runs:
        runs.add_row(
            run["run_id"],
            str(run["pipeline_name"]),
            run["status"],
            f"{run['current_step_index']}/{run['total_steps']}",
            str(run["metadata"].get("batch_id")),
            ", ".join(run["metadata"].get("tags", [])),
        )
    console.print(runs)
    console.print(
        f"[green]Demo finished[/] in {report.total_seconds:.1f} s "
        f"(first open and migration {report.migrate_seconds:.2f} s). Data: {report.location}"
    )


def _factory(db_url: str | None) -> tuple[SessionFactory, str]:
    if db_url is None:
        directory = Path(tempfile.mkdtemp(prefix="reflexio-demo-"))
        path = directory / "reflexio.db"
        return SessionFactory.from_config(StorageConfigSQLite(db_url=f"sqlite:///{path}")), str(
            path
        )
    url = parse_database_url(db_url)
    if url.backend == "sqlite":
        return SessionFactory.from_config(StorageConfigSQLite(db_url=db_url)), url.masked()
    config = StorageConfigPostgres(db_url=db_url)
    # PostgreSQL is never migrated implicitly; the demo migrates its own target explicitly.
    upgrade(resolve_storage(config))
    return SessionFactory.from_config(config), url.masked()


def run_demo(
    console: Console | None = None,
    *,
    db_url: str | None = None,
    size: WorkloadSize | None = None,
    errors: Console | None = None,
) -> int:
    """Run the demo and print its summary; 0 on success, 1 on a store error (printed on
    `errors`, by default stderr: stdout stays the demo's report)."""
    console = console or Console()
    factory: SessionFactory | None = None
    try:
        factory, location = _factory(db_url)
        console.print(f"[bold]reflexio_store demo[/] — database: {location}")
        console.print(
            "[dim]Vectors come from the demo hashing embedder (not a language model): "
            "similarity is word overlap.[/]"
        )
        report = execute_demo(Store(factory), location, size)
    except ReflexioStoreError as exc:
        errors = errors or Console(stderr=True)
        errors.print(f"[red]Demo failed:[/] {escape(str(exc))}", soft_wrap=True)
        return 2  # as every other command's failure
    finally:
        if factory is not None:
            factory.dispose()
    _render(console, report)
    return 0
