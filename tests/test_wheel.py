"""The migrations run from an installed wheel, not only from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from reflexio_store.migrations import head_revision

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_migrations_and_migrates_outside_the_checkout(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("reflexio_store-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reflexio_store/_alembic/env.py" in names
    assert any(n.startswith("reflexio_store/_alembic/versions/0001_") for n in names)
    assert "reflexio_store/py.typed" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = elsewhere / "w.db"
    env = {**os.environ, "PYTHONPATH": str(site), "REFLEXIO_DB_URL": f"sqlite:///{db}"}
    code = (
        "import reflexio_store.migrations as m, sys;"
        "assert m.script_location().startswith(sys.argv[1]), m.script_location();"
        "from reflexio_store.cli import main; raise SystemExit(main(['migrate']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "from reflexio_store.cli import main; raise SystemExit(main(['check']))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{head_revision()} (head {head_revision()})" in check.stdout

    # Alembic's own command line from the installed wheel, through the shipped alembic.ini.
    ini = subprocess.run(
        [
            sys.executable,
            "-c",
            "from reflexio_store.cli import main; raise SystemExit(main(['alembic-ini']))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ini.returncode == 0, ini.stderr
    ini_path = Path(ini.stdout.strip())
    assert ini_path.is_relative_to(site) and ini_path.exists()
    other = {**env, "REFLEXIO_DB_URL": f"sqlite:///{elsewhere / 'a.db'}"}
    for args in (["upgrade", "head"], ["check"], ["current"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini_path), *args],
            cwd=elsewhere,
            env=other,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        if args[0] == "upgrade":
            assert "Running upgrade  -> 0001" in result.stderr  # progress, as alembic.ini says
    assert f"{head_revision()} (head)" in result.stdout
