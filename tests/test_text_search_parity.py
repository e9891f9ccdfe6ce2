"""Text search means the same on SQLite and PostgreSQL: one corpus, the same queries, the same
hit sets (ranking may differ). See reflexio_store.search.fts_query for the semantics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert, text

from reflexio_store import SessionFactory
from reflexio_store.models import Profile
from reflexio_store.search import search_terms
from reflexio_store.store import search as ops
from tests.test_search import axis, profile_row

CORPUS = [
    "Prefers dark mode in every editor",
    "Uses light mode during the day; dark-mode at night",
    "Timezone is Europe/Berlin",
    "Lives in Berlin, works remotely for a company in Munich",
    "Timezone: America/New_York (EST)",
    "Contact by e-mail only, never by phone",
    "Email newsletters are unwanted",
    "Writes C++ and Rust; dislikes Java",
    "Learning C# and F# this year",
    "Doesn't like meetings before 10am",
    "The user's favourite café is Café Crème in Paris",
    "Naïve Bayes models are what they use at work",
    "Running a marathon in October; runs 40 km a week",
    "Ran the Berlin marathon last year",
    "Allergic to peanuts and tree nuts",
    "Vegetarian; prefers Italian and Indian food",
    "Preference: responses in German, not English",
    "Incredibly busy on Mondays",
    "Studies methodology and technology of surveys",
    "Works on networking, graph topology and ontologies",
    "Uses Python 3.11 with numpy 1.26",
    "Version 2.0 release planned for 2026-12-01",
    "Owns a dog named Rex and two cats",
    "Is a night owl who codes until 3am",
    "Says it's OK to use first names",
    "Likes the band AC/DC and the group ABBA",
    "Works at O'Reilly Media as an editor",
    "Reads news at https://example.com/news every morning",
    "Uses the -v flag and --verbose output",
    "Stop words only: the and of to in is",
    "Émile Zola and Gérard Depardieu are favourite French names",
    "Deutsch: Grüße aus München, Straße",
    "Speaks Ελληνικά and Русский a little",
    "Enjoys 🎉 parties and 🍕 pizza",
    "Mode of transport: bicycle; models trains as a hobby",
]

QUERIES = [
    "dark mode",
    "dark-mode",
    "-dark",
    '"dark mode"',
    "dark AND mode",
    "dark OR light",
    "NOT dark",
    "timezone Berlin",
    "Europe/Berlin",
    "berlin",
    "New York",
    "new_york",
    "e-mail",
    "email",
    "mail",
    "C++",
    "C#",
    "c",
    "doesn't",
    "don't",
    "it's",
    "O'Reilly",
    "reilly",
    "café",
    "CAFE",
    "naive",
    "NAÏVE",
    "run",
    "running",
    "marathons",
    "preferences",
    "incredible",
    "technologies",
    "topology",
    "ontology",
    "3.11",
    "11",
    "2026-12-01",
    "AC/DC",
    "https://example.com",
    "example.com/news",
    "--verbose",
    "-v",
    "the",
    "the and of",
    "is",
    "am",
    "Émile",
    "emile gerard",
    "grüße",
    "MÜNCHEN",
    "strasse",
    "straße",
    "Ελληνικά",
    "русский",
    "🎉 parties",
    "pizza🍕",
    "modes",
    "model",
    "dog cats",
    "peanut allergies",
    "italian indian",
    "night owl",
    "content:coffee",
    "mode*",
    "NEAR(dark mode)",
    "^dark",
]


def _hits(factory: SessionFactory, query: str) -> set[str]:
    with factory.reader() as s:
        hits = ops.search_profiles(s, query, mode="text", top_k=1000)
    return {h.item.content for h in hits}


@pytest.fixture
def both(
    sqlite_factory: SessionFactory, pg_factory: SessionFactory, pg: Any
) -> Callable[[str], tuple[set[str], set[str]]]:
    """The corpus in a SQLite file and in PostgreSQL (read through the replica)."""
    for factory in (sqlite_factory, pg_factory):
        d = factory.storage.embedding_dimensions
        with factory.writer() as s:
            s.execute(insert(Profile), [profile_row("u", c, axis(d)) for c in CORPUS])
    pg.wait_for_replica()
    return lambda q: (_hits(sqlite_factory, q), _hits(pg_factory, q))


def test_same_hit_sets_on_both_databases(both: Callable[[str], tuple[set[str], set[str]]]) -> None:
    assert len(QUERIES) >= 30
    differ = {}
    for query in QUERIES:
        on_sqlite, on_pg = both(query)
        if on_sqlite != on_pg:
            differ[query] = (sorted(on_sqlite ^ on_pg), sorted(on_sqlite & on_pg))
    assert not differ, differ


def test_documented_meaning(both: Callable[[str], tuple[set[str], set[str]]]) -> None:
    for query in QUERIES:
        # Every query either finds nothing or only rows with at least one of its terms.
        assert bool(search_terms(query)) or both(query) == (set(), set())
    sqlite, pg = both("dark mode")
    assert sqlite == pg
    # OR of terms: "mode" alone matches the transport row.
    assert {CORPUS[0], CORPUS[1], CORPUS[-1]} <= sqlite
    # `/` separates terms, so Berlin is found inside Europe/Berlin.
    assert both("timezone Berlin")[1] >= {CORPUS[2], CORPUS[3], CORPUS[4], CORPUS[13]}
    # A leading `-` is not a negation: "-dark" finds the dark rows.
    assert both("-dark")[1] == {CORPUS[0], CORPUS[1]}
    # Stemming and diacritics, alike on both.
    assert CORPUS[12] in both("runs")[1]
    assert CORPUS[11] in both("naive")[1]
    assert CORPUS[10] in both("CAFE")[1]
    # Stop words are kept in the index, and searched when the query has nothing else.
    assert both("the and of")[1] >= {CORPUS[29]}


def test_postgres_stems_words_as_fts5(sqlite_factory: SessionFactory, pg_factory: Any) -> None:
    """Word by word, PostgreSQL's reflexio_fts_document gives the term FTS5's porter unicode61
    tokenizer indexes (the words of the corpus plus known differences between Porter variants).

    ASCII words only: FTS5's Porter counts the bytes of a UTF-8 letter as consonants, so a few
    words with non-ASCII letters stem differently (e.g. "straße"); README says so."""
    words = sorted(
        {w for c in CORPUS for w in search_terms(c) if w.isascii()}
        | {
            "incredibly",
            "possibly",
            "technology",
            "technologies",
            "apologies",
            "generalization",
            "hopefully",
            "us",
            "as",
            "ay",
            "caresses",
            "ponies",
            "relational",
            "conditional",
            "rational",
            "hopeful",
            "goodness",
            "adjustable",
            "x" * 70 + "ing",
        }
    )
    with sqlite_factory.writer() as s:
        s.execute(text("CREATE VIRTUAL TABLE temp.w USING fts5(x, tokenize='porter unicode61')"))
        s.execute(text("CREATE VIRTUAL TABLE temp.v USING fts5vocab(temp, w, 'instance')"))
        for i, word in enumerate(words):
            s.execute(text("INSERT INTO temp.w(rowid, x) VALUES (:i, :w)"), {"i": i, "w": word})
        on_sqlite = {words[doc]: term for term, doc in s.execute(text("SELECT term, doc FROM v"))}
    function = f'"{pg_factory.storage.schema}".reflexio_fts_document'
    with pg_factory.writer() as s:
        on_pg = {
            word: s.execute(
                text(f"SELECT (tsvector_to_array({function}(:w)))[1]"), {"w": word}
            ).scalar()
            for word in words
        }
    assert on_sqlite == on_pg
