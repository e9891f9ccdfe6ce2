"""Parsing and normalising database URLs, and masking their secrets."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from reflexio_store.errors import ConfigurationError, DriverMissingError

Backend = Literal["sqlite", "postgresql"]

ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory:, "
    "postgres://user:password@host:5432/db, postgresql://... or postgresql+psycopg://..."
)

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite"}


@dataclass(frozen=True)
class DatabaseURL:
    """A validated database URL: which backend, the SQLAlchemy URL, and a printable form."""

    backend: Backend
    url: URL

    @property
    def is_memory(self) -> bool:
        return self.backend == "sqlite" and self.url.database in (None, "", ":memory:")

    @property
    def sqlite_path(self) -> Path | None:
        if self.backend != "sqlite" or self.is_memory:
            return None
        return Path(str(self.url.database))

    def masked(self) -> str:
        """The URL with its password hidden: safe for logs, reprs and error messages."""
        return mask_url(self.url)

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked()!r})"

    __str__ = masked


SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def mask_url(url: URL | str) -> str:
    """The URL with its password hidden, including libpq's ?password= style parameters."""
    if isinstance(url, str):
        try:
            url = make_url(_hosts_to_query(url, "The URL"))
        except (ArgumentError, ValueError):  # ConfigurationError is a ValueError too
            return "<unparseable URL>"
    secret_keys = [k for k in url.query if k.lower() in SECRET_QUERY_KEYS]
    if secret_keys:
        url = url.update_query_dict({k: "***" for k in secret_keys})
    shown = url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    # SQLAlchemy percent-encodes the colons of SQLite's special name.
    return shown.replace("%3Amemory%3A", ":memory:")


def _check_query_ports(url: URL, source: str) -> None:
    """`?port=` (one port, or one per host, comma-separated) must be numbers 1-65535:
    SQLAlchemy would otherwise raise a bare ArgumentError at the first connection."""
    given = url.query.get("port")
    if given is None:
        return
    values = [given] if isinstance(given, str) else list(given)
    for port in (p.strip() for value in values for p in value.split(",")):
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError(
                f"{source} ({mask_url(url)}) has ?port={port[:20]!r}; a port is a number "
                "1-65535 (one per host, comma-separated)."
            )


def _check_hosts_and_ports(url: URL, source: str) -> None:
    """Let SQLAlchemy's psycopg dialect read the hosts and ports now (it needs no connection):
    `?host=a,b&port=1,2,3` and `?host=h:abc` would otherwise fail at the first connection."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    try:
        PGDialect_psycopg().create_connect_args(url)  # type: ignore[no-untyped-call]
    except (ArgumentError, ValueError) as exc:
        # ValueError: a bracketed IPv6 address among several hosts, which SQLAlchemy cannot split.
        problem = "unreadable hosts or ports"
        if isinstance(exc, ArgumentError) and str(exc):
            problem = str(exc).splitlines()[0]
    else:
        return
    raise ConfigurationError(
        f"{source} ({mask_url(url)}): {problem}. Give one port per host, e.g. "
        "?host=h1:5432&host=h2:5433 or postgresql://user@/db?host=h1,h2&port=5432,5433."
    )


# The userinfo as SQLAlchemy's parser reads it (a password runs to the first '@', so it may hold
# '/', '?', '#' and ','), then the host list up to the path or query.
_HOST_LIST = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://(?:[^:/@]*(?::[^@]*)?@)?)(?P<hosts>[^/?#]*)(?P<rest>.*)",
    re.S,
)
_ONE_HOST = re.compile(r"(?P<host>[A-Za-z0-9._%-]+)(?::(?P<port>[0-9]{1,5}))?")


def _hosts_to_query(raw: str, source: str) -> str:
    """libpq's multi-host form with ports, `postgresql://user@h1:5432,h2:5433/db`, as SQLAlchemy
    reads it, `postgresql://user@/db?host=h1:5432&host=h2:5433`: SQLAlchemy's URL parser takes
    everything after the first colon for one port. Other URLs are returned as they are.
    Messages never show the URL: what precedes the hosts may be a password."""
    found = _HOST_LIST.fullmatch(raw)
    if found is None or "," not in found["hosts"] or "@" in found["hosts"]:
        return raw  # one host; or an unencoded '@' in the password, refused by the caller
    if found["head"].split("://")[0].lower() not in _POSTGRES_SCHEMES:
        return raw  # SQLite and the rest: refused or handled as they always were
    hosts = found["hosts"].split(",")
    if not any(":" in host for host in hosts):
        # No ports: SQLAlchemy hands "h1,h2" to libpq as one host setting, which libpq splits
        # itself (and pairs with ?port=5432,5433 when given).
        return raw
    for number, host in enumerate(hosts, 1):
        one = _ONE_HOST.fullmatch(host)
        if one is None or (one["port"] is not None and not 0 < int(one["port"]) < 65536):
            raise ConfigurationError(
                f"{source} lists {len(hosts)} hosts, and host {number} (not shown: a malformed "
                "URL may put part of a password there) is not a host name or address with an "
                "optional port 1-65535. No spaces or empty entries; IPv6 addresses are not "
                "supported in a host list (use names, or ?host=... for a single IPv6 host)."
            )
    path, _, query = found["rest"].partition("?")
    if re.search(r"(^|&)(host|hostaddr|port)=", query):
        raise ConfigurationError(
            f"{source} lists several hosts with their ports and also gives ?host= or ?port=; "
            "libpq would use the query's and ignore the list. Give the hosts one way."
        )
    given = "&".join(f"host={host}" for host in hosts)
    return f"{found['head']}{path or '/'}?{given}{'&' + query if query else ''}"


def parse_database_url(raw: str | URL, source: str = "The database URL") -> DatabaseURL:
    """Validate a URL and normalise it to the driver reflexio_store uses.

    postgres://, postgresql:// and postgresql+psycopg:// all mean PostgreSQL through psycopg 3.
    sqlite:/// paths are relative to the working directory; sqlite://// paths are absolute.
    `source` names where the URL came from (a variable, a field) in error messages.
    """
    if isinstance(raw, str):
        raw = _hosts_to_query(raw, source)
    try:
        url = make_url(raw) if isinstance(raw, str) else raw
    except ValueError:
        # SQLAlchemy parses the port with int(): "host:abc" is a bare ValueError.
        raise ConfigurationError(
            f"{source} has a port that is not a number. Use host:5432 (1-65535). "
            "Accepted forms: " + ACCEPTED_FORMS
        ) from None
    except ArgumentError:
        raise ConfigurationError(
            f"{source} could not be parsed. Accepted forms: " + ACCEPTED_FORMS
        ) from None
    if "@" in (url.host or ""):
        # Not echoed: the text after the first "@" is usually the rest of a password.
        raise ConfigurationError(
            f"{source} has an '@' after the one that ends the user and password, so part of the "
            "password would be read as the host name. Percent-encode '@' in the password as %40 "
            "(and ':' as %3A, '/' as %2F), e.g. with urllib.parse.quote(password, safe='')."
        )
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(
            f"{source} ({mask_url(url)}) has port {url.port}; a port is 1-65535."
        )
    scheme = url.drivername
    if scheme in _POSTGRES_SCHEMES:
        if importlib.util.find_spec("psycopg") is None:
            raise DriverMissingError(
                "A PostgreSQL URL is configured but psycopg 3 is not installed. "
                "Install it with: pip install 'psycopg[binary]>=3.2'"
            )
        _check_query_ports(url, source)
        normalised = url.set(drivername="postgresql+psycopg")
        _check_hosts_and_ports(normalised, source)
        return DatabaseURL("postgresql", normalised)
    if scheme in _SQLITE_SCHEMES:
        if url.host or url.username or url.password:
            raise ConfigurationError(
                f"{source}: SQLite URLs take a path, not a host: got {mask_url(url)}. "
                "Accepted forms: " + ACCEPTED_FORMS
            )
        return DatabaseURL("sqlite", url.set(drivername="sqlite"))
    raise ConfigurationError(
        f"{source}: unsupported database URL scheme {scheme!r} in {mask_url(url)}. "
        "Accepted forms: " + ACCEPTED_FORMS
    )
