"""A new user's two stumbles: a mistyped DEPLOYMENT_MODE was silently "not self-host", and the
command line named its options by the library's parameter names (lock_timeout, only_below,
batch). Now the first is a ConfigurationError saying what is accepted, reported by `check` like
every other bad setting, and the second names the option as typed (--lock-timeout), while a
Python caller still reads the parameter name."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from reflexio_store.cli import main
from reflexio_store.errors import ConfigurationError, ValidationError
from reflexio_store.maintenance import cluster_by_user
from reflexio_store.self_host import self_host_login
from reflexio_store.sessions import SessionFactory
from reflexio_store.settings import (
    StorageConfigSQLite,
    StorageSettings,
    load_settings,
    resolve_storage,
)
from reflexio_store.transfer.copy import copy_database
from tests.conftest import PgEndpoints, make_pg_config
from tests.test_cli import _one_error_line
from tests.test_maintenance import _relfilenode

# -- DEPLOYMENT_MODE -------------------------------------------------------------------------


@pytest.fixture
def self_host_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "reflexio.db"
    monkeypatch.setenv("DATA_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("SELF_HOST_USERNAME", "admin")
    monkeypatch.setenv("SELF_HOST_PASSWORD", "Pw-not-in-messages-7")
    return path


def _assert_explains(message: str, shown: str) -> None:
    assert "DEPLOYMENT_MODE" in message and shown in message
    for accepted in ("self-host", "self_host", "selfhost"):
        assert accepted in message
    assert "unset DEPLOYMENT_MODE" in message  # how to fix it
    assert "Pw-not-in-messages-7" not in message


@pytest.mark.parametrize("typo", ["selfhosted", "self host", "Self-Hosted", "self", "HOST"])
def test_a_mistyped_deployment_mode_is_refused_not_read_as_not_self_host(
    monkeypatch: pytest.MonkeyPatch, self_host_env: Path, typo: str
) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", typo)
    with pytest.raises(ConfigurationError) as info:
        resolve_storage()
    message = str(info.value)
    assert message.startswith("Invalid reflexio_store environment settings: DEPLOYMENT_MODE: ")
    _assert_explains(message, repr(typo) if " " not in typo else "character value")
    assert "Value error" not in message  # our sentence, not pydantic's wrapper
    with pytest.raises(ConfigurationError, match="DEPLOYMENT_MODE"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "self_host"),
    [
        ("self-host", True),
        ("self_host", True),  # Reflexio's spelling
        ("selfhost", True),
        ("  SELF_HOST ", True),
        ("Self-Host", True),
        ("platform", False),  # other deployments set their own values: not self-host
        ("PLATFORM", False),
        ("cloud", False),
        ("", False),  # VAR= is unset
        ("   ", False),
    ],
)
def test_accepted_deployment_modes_fold_case_and_spaces(
    monkeypatch: pytest.MonkeyPatch, self_host_env: Path, value: str, self_host: bool
) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", value)
    storage = resolve_storage()
    assert (storage.self_host is not None) is self_host
    if self_host:
        assert storage.self_host is not None and storage.self_host.username == "admin"
    folded = StorageSettings().deployment_mode
    assert folded == (value.strip().lower() or None)


def test_a_deployment_mode_that_is_not_a_word_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, self_host_env: Path
) -> None:
    pasted = "postgresql://u:Sekrit-3@h/db"  # something pasted into the wrong variable
    monkeypatch.setenv("DEPLOYMENT_MODE", pasted)
    with pytest.raises(ConfigurationError) as info:
        resolve_storage()
    assert "Sekrit-3" not in str(info.value) and pasted not in str(info.value)
    _assert_explains(str(info.value), f"a {len(pasted)}-character value")


def test_self_host_login_called_directly_refuses_a_typo_too() -> None:
    with pytest.raises(ConfigurationError) as info:
        self_host_login("selfhosted", "admin", SecretStr("Pw-not-in-messages-7"))
    _assert_explains(str(info.value), "'selfhosted'")
    assert self_host_login("platform", None, None) is None
    assert self_host_login(None, None, None) is None


def test_check_reports_a_mistyped_deployment_mode_like_other_bad_settings(
    monkeypatch: pytest.MonkeyPatch, self_host_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("REFLEXIO_STORAGE", "sqlitee")
    assert main(["check"]) == 2
    other = _one_error_line(capsys.readouterr().err)
    monkeypatch.delenv("REFLEXIO_STORAGE")

    monkeypatch.setenv("DEPLOYMENT_MODE", "selfhosted")
    for argv in (["check"], ["check", "--url", f"sqlite:///{self_host_env}"]):
        assert main(argv) == 2  # the same exit code as for the other bad setting
        captured = capsys.readouterr()
        line = _one_error_line(captured.err)
        prefix = "error: Invalid reflexio_store environment settings: "
        assert other.startswith(prefix) and line.startswith(prefix + "DEPLOYMENT_MODE: ")
        assert line.endswith("See the configuration table in README.md.")
        _assert_explains(line, "'selfhosted'")
        assert "self_host" not in captured.out  # no report table as if it were fine
    assert not self_host_env.exists()  # nothing was created


# -- option names: copy ----------------------------------------------------------------------


@pytest.fixture
def source_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    assert main(["migrate", "--url", url]) == 0
    return url


@pytest.mark.parametrize("batch", ["0", "-3", "50001"])
def test_copy_names_batch_as_typed_before_touching_the_target(
    source_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], batch: str
) -> None:
    target = tmp_path / "target.db"
    capsys.readouterr()
    assert (
        main(["copy", "--from", source_url, "--to", f"sqlite:///{target}", "--batch", batch]) == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert (
        line == f"error: --batch must be an integer from 1 to 50000 (rows per batch), got {batch}."
    )
    assert not target.exists()  # 50001 used to migrate the target, then fail


def test_copy_database_from_python_names_the_parameter(source_url: str, tmp_path: Path) -> None:
    source = SessionFactory(resolve_storage(StorageConfigSQLite(db_url=source_url)))
    target = SessionFactory(
        resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'target.db'}"))
    )
    try:
        for batch in (0, 50_001, True, 2.5):
            with pytest.raises(ConfigurationError, match=r"^batch must be an integer from 1 to"):
                copy_database(source, target, batch=batch)
    finally:
        source.dispose()
        target.dispose()
    assert not (tmp_path / "target.db").exists()


def test_copy_names_the_url_options_as_typed(
    source_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["copy", "--from", source_url, "--to", "not-a-url"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: --to could not be parsed")
    assert main(["copy", "--from", "bogus://x", "--to", f"sqlite:///{tmp_path / 't.db'}"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: --from: unsupported")
    assert main(["import-reflexio", str(tmp_path / "source.db"), "--url", "bogus://x"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: --url: unsupported")


# -- option names: cluster -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lock-timeout", "0"], "--lock-timeout must be a finite number from 0.001 to 3600."),
        (["--lock-timeout", "nan"], "--lock-timeout must be a finite number from 0.001 to 3600."),
        (["--lock-timeout", "7200"], "--lock-timeout must be a finite number from 0.001 to 3600."),
        (["--only-below", "1.5"], "--only-below must be a finite number from 0 to 1."),
        (["--only-below", "-0.1"], "--only-below must be a finite number from 0 to 1."),
    ],
)
def test_cluster_names_its_options_as_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """Checked before the database is looked at: on SQLite (where clustering has nothing to do)
    the bad option is what is reported."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["cluster", "--url", url, *argv, "--yes"]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"error: {expected}"
    assert not (tmp_path / "r.db").exists()


@pytest.mark.postgres
def test_cluster_on_postgres_names_options_as_typed_and_python_names_parameters(
    pg: PgEndpoints,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # no terminal: asking would refuse
    node = _relfilenode(pg, pg_schema, "profiles")
    argv = ["cluster", "--url", pg.primary_url, "--schema", pg_schema, "--table", "profiles"]
    assert main([*argv, "--lock-timeout", "0"]) == 2
    captured = capsys.readouterr()
    # Checked before asking (it used to refuse for want of --yes, then fail on lock_timeout).
    assert _one_error_line(captured.err).startswith("error: --lock-timeout must be")
    assert main([*argv, "--only-below", "2", "--yes"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: --only-below must be")
    assert _relfilenode(pg, pg_schema, "profiles") == node

    storage = resolve_storage(make_pg_config(pg, pg_schema), StorageSettings())
    with pytest.raises(ValidationError, match=r"^lock_timeout must be a finite number"):
        cluster_by_user(storage, ["profiles"], lock_timeout=0)
    with pytest.raises(ValidationError, match=r"^only_below must be a finite number"):
        cluster_by_user(storage, ["profiles"], only_below=2)
    assert _relfilenode(pg, pg_schema, "profiles") == node
