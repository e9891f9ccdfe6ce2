"""Developer sessions: `nox -s tests lint typecheck migrations`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "migrations"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole suite, on SQLite files and a PostgreSQL + pgvector primary with a replica."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "reflexio_store", "alembic", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "reflexio_store", "alembic", "tests", "benchmarks")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy", "reflexio_store")


@nox.session(python="3.11")
def migrations(session: nox.Session) -> None:
    """upgrade -> check -> downgrade -> upgrade on SQLite and on PostgreSQL (started here)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_migrations.py", "-q", *session.posargs)
    tmp = session.create_tmp()
    env = {"REFLEXIO_DB_URL": f"sqlite:///{tmp}/nox.db"}
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        session.run("alembic", *args, env=env)
