"""The peers' own virtualenvs: what pgkb is compared with never becomes one of its dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def make_venv(venv: Path, *installs: list[str]) -> None:
    """Create `venv` and run `pip install -q` with each argument list in turn. pip runs without
    the caller's PYTHONPATH: nothing of pgkb's tree (nor a test's network guard) reaches it."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    for arguments in installs:
        subprocess.run(pip + arguments, check=True, env=env)
