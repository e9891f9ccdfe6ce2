"""A real PgBouncer in transaction pooling mode in front of the test primary.

The Debian package ``pgbouncer`` provides the binary (``.ci/run`` installs it). PgBouncer refuses
to run as root, so when we are root it runs as the system user the PostgreSQL test servers run as
(``pgserver``), which may also enter the primary's socket directory. It listens on a Unix socket
in its own temporary directory only, with ``auth_type = any``: every client is logged in as the
user named in ``[databases]``, as on the trusted test primary.

:func:`start_pgbouncer` waits until PgBouncer answers (a real query through it, with a deadline)
and :meth:`PgBouncer.stop` terminates the process it started (by its pid).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from sqlalchemy.engine import make_url

_SERVER_OS_USER = "pgserver"  # as in pg_cluster: the user the test servers run as when root
_START_TIMEOUT = 15.0
_POLL_INTERVAL = 0.02
CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


class PgBouncerStartError(RuntimeError):
    """PgBouncer was installed but did not start; the message carries its log."""


def pgbouncer_binary() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass
class PgBouncer:
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    database: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the primary's database through PgBouncer."""
        host = quote(str(self.directory), safe="/")
        return f"postgresql+psycopg://postgres@/{self.database}?host={host}&port={self.port}"

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user="postgres",
            dbname=self.database,
            autocommit=True,
            connect_timeout=5,
            **kwargs,  # type: ignore[arg-type]
        )

    def log(self) -> str:
        try:
            return (self.directory / "pgbouncer.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pgbouncer(primary_url: str, *, pool_size: int = 2, port: int = 6543) -> PgBouncer:
    """Start PgBouncer (transaction pooling, `pool_size` server connections) in front of the
    server `primary_url` names. Raises FileNotFoundError when the binary is missing."""
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer")
    url = make_url(primary_url)
    query_host = url.query.get("host")
    host = query_host if isinstance(query_host, str) else (url.host or "localhost")
    query_port = url.query.get("port")
    server_port = int(query_port) if isinstance(query_port, str) else (url.port or 5432)
    database = url.database or "postgres"
    user = url.username or "postgres"

    directory = Path(tempfile.mkdtemp(prefix="rxs-pgb-", dir="/tmp"))
    run_as: dict[str, object] = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_SERVER_OS_USER)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    directory.chmod(0o755)
    password = f" password={url.password}" if url.password else ""
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{database} = host={host} port={server_port} dbname={database} user={user}{password}\n"
        "[pgbouncer]\n"
        "listen_addr =\n"
        f"listen_port = {port}\n"
        f"unix_socket_dir = {directory}\n"
        "auth_type = any\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "min_pool_size = 0\n"
        "max_client_conn = 200\n"
        "server_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    if run_as:
        os.chown(config, run_as["user"], run_as["group"])  # type: ignore[arg-type]
    process = subprocess.Popen(
        [binary, str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        **run_as,  # type: ignore[arg-type]
    )
    bouncer = PgBouncer(process, directory, port, database)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if process.poll() is not None:
            log = bouncer.log()
            bouncer.stop()
            raise PgBouncerStartError(f"pgbouncer exited with {process.returncode}:\n{log}")
        try:
            with bouncer.connect() as conn:
                conn.execute("SELECT 1")
            return bouncer
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                log = bouncer.log()
                bouncer.stop()
                raise PgBouncerStartError(f"pgbouncer did not answer in time:\n{log}") from None
            time.sleep(_POLL_INTERVAL)
