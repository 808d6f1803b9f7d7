"""The linter and the type checker find nothing: `ruff check .` and `mypy` (both configured in
pyproject.toml), run from the repository root with the Python environment that runs the tests."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_the_checker_finds_nothing(command):
    run = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{' '.join(command)} found problems:\n{run.stdout}{run.stderr}"
