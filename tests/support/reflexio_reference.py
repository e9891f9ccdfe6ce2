"""Reflexio's own SQLiteStorage, made importable on Python 3.11 for tests only.

reflexio-ai 0.2.8 writes `except A, B:` (Python 3.14 syntax) in three modules, so its storage
and server do not import here. The installed package is copied into a scratch folder and those
lines are rewritten to `except (A, B):`; the copy goes first on a subprocess's sys.path. Nothing
in the repository or the installed package changes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

_BARE_TUPLE = re.compile(r"^(\s*)except\s+([\w.]+(?:\s*,\s*[\w.]+)+)\s*:", re.M)


def installed_reflexio() -> Path:
    spec = importlib.util.find_spec("reflexio")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("reflexio-ai is not installed: pip install -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations)))


def patched_reflexio(scratch: Path) -> Path:
    """A copy of the installed `reflexio` package under `scratch` that imports on 3.11;
    returns the folder to put first on sys.path."""
    target = scratch / "reflexio"
    if not target.exists():
        # Compiled files come along: only the rewritten modules are compiled again.
        shutil.copytree(installed_reflexio(), target)
        for path in target.rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            fixed = _BARE_TUPLE.sub(lambda m: f"{m[1]}except ({m[2]}):", source)
            if fixed != source:
                path.write_text(fixed, encoding="utf-8")
    return scratch


ROOT = Path(__file__).resolve().parent.parent.parent


def run_patched(reference: Path, home: Path, module: str, marker: str, *args: str) -> Any:
    """Run `python -m module args` with the patched reflexio-ai first on sys.path; return the
    JSON the module printed after `marker` (the run must exit 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLEXIO_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(reference), str(ROOT)]),
        HOME=str(home),  # Reflexio writes ~/.reflexio/.env when imported
        # Reflexio picks its embedding model by which provider key is set; it is never called.
        OPENAI_API_KEY="not-a-key",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no network fetch at import
    )
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len(marker) :])
