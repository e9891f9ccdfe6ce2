"""A role that must authenticate with a password on the test primary (which trusts its socket).

The suite's primary trusts every local connection; to see real "password authentication failed"
errors, a pg_hba.conf line requiring scram-sha-256 for one role is put first and the server
reloaded. The line names only that role, so every other test connection stays trusted.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class PasswordRole:
    name: str
    password: str
    good_url: str
    bad_url: str


def _conninfo(url: str) -> dict[str, object]:
    u = make_url(url)
    return {
        "host": u.query.get("host") or u.host,
        "port": int(u.query.get("port") or u.port or 5432),
        "user": u.username,
        "dbname": u.database,
        "connect_timeout": 10,
    }


def create_password_role(primary_url: str, timeout: float = 15.0) -> PasswordRole:
    name = f"rxs_pw_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    admin = _conninfo(primary_url)
    with psycopg.connect(**admin, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT CREATE ON DATABASE {admin['dbname']} TO {name}")
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        hba.write_text(f"local all {name} scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    base = make_url(primary_url).set(username=name)
    good = base.set(password=password).render_as_string(hide_password=False)
    bad = base.set(password="wrong-" + password).render_as_string(hide_password=False)
    # The reload is asynchronous: wait until the wrong password is really refused.
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(**{**admin, "user": name, "password": "wrong"}).close()  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                break
        if time.monotonic() > deadline:
            raise TimeoutError("pg_hba.conf reload did not take effect")
        time.sleep(0.02)
    return PasswordRole(name, password, good, bad)
