"""The configuration file (pgkb.toml in the working directory, or PGKB_CONFIG): its settings
are used, the environment overrides them and a flag the environment; a bad file stops a
command with one line naming the file and what is wrong, exit 2."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgkb.errors import ConfigurationError
from pgkb.settings import Settings

SPACE = {"model": "test/random", "dims": 8, "pooling": "mean", "normalize": True}


def run_in(folder: Path, command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """An installed console script run from `folder`, as a user runs it there."""
    script = shutil.which(command, path=str(Path(sys.executable).parent))
    assert script
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120, cwd=folder,
                          env={**os.environ, **(env or {})})


def refused(result: subprocess.CompletedProcess) -> str:
    """The one-line error of a command stopped by its configuration."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout
    (line,) = result.stderr.strip().splitlines()
    return line


def test_the_files_settings_are_used_the_environment_overrides_them_and_a_flag_the_environment(
        store, settings, tmp_path):
    store.collection(settings.collection, SPACE)  # empty: a keyword search finds nothing, and loads no model
    (tmp_path / "pgkb.toml").write_text(f'[settings]\ndata_dir = "{settings.data_dir}"\n'
                                        f'collection = "{settings.collection}"\n')
    found = run_in(tmp_path, "search", "anything", "--mode", "keyword", "--json")
    assert found.returncode == 0, found.stderr  # elsewhere, or in another collection, it would not exist
    assert json.loads(found.stdout) == []

    # A data folder that cannot be made is refused naming itself: which one shows who won.
    (tmp_path / "pgkb.toml").write_text('[settings]\ndata_dir = "/proc/from-file"\n')
    assert "/proc/from-file" in refused(run_in(tmp_path, "search", "anything"))
    from_env = {"PGKB_DATA_DIR": "/proc/from-env"}
    assert "/proc/from-env" in refused(run_in(tmp_path, "search", "anything", env=from_env))
    flagged = refused(run_in(tmp_path, "search", "anything", "--data-dir", "/proc/from-flag", env=from_env))
    assert "/proc/from-flag" in flagged and "/proc/from-env" not in flagged


def test_the_file_pgkb_config_names_is_read_wherever_the_command_runs(tmp_path):
    config = tmp_path / "etc" / "kb.toml"
    config.parent.mkdir()
    config.write_text('[settings]\ndata_dir = "/proc/named"\n')
    (tmp_path / "pgkb.toml").write_text('[settings]\ndata_dir = "/proc/local"\n')  # not read: a file is named
    assert "/proc/named" in refused(run_in(tmp_path, "search", "anything", env={"PGKB_CONFIG": str(config)}))


BAD_FILES = [  # the file, and what the error must say besides its name
    ('[settings]\nchunk_token = 300\n', ["unknown setting chunk_token (did you mean chunk_tokens?)"]),
    ('[setting]\nchunk_tokens = 300\n', ["unknown key setting", "[settings]"]),
    ('chunk_tokens = 300\n', ["unknown key chunk_tokens", "[settings]"]),
    ('[settings]\nchunk_tokens = "many"\n', ["setting chunk_tokens must be a whole number, not text"]),
    ('[settings]\nchunk_tokens = 3\n', ["chunk_tokens", "at least 32, got 3"]),
    ('[settings]\npii_keys = "hide"\n', ["PGKB_PII_KEYS must be mask or keep"]),
    ('[settings]\ncollection = "open\n', ["not valid TOML", "line 2"]),
    ('[settings]\npasswords = ["secret"]\n', ["unknown setting passwords"]),
]


@pytest.mark.parametrize("content, says", BAD_FILES, ids=[says[0] for _, says in BAD_FILES])
def test_a_bad_file_stops_the_command_naming_it_and_the_key(content, says, tmp_path):
    (tmp_path / "pgkb.toml").write_text(content)
    error = refused(run_in(tmp_path, "search", "anything"))
    assert error.startswith("error: pgkb.toml: "), error
    for part in says:
        assert part in error, error
    assert "secret" not in error


def test_a_missing_named_file_is_refused(tmp_path):
    missing = tmp_path / "missing.toml"
    assert refused(run_in(tmp_path, "ingest", str(tmp_path), env={"PGKB_CONFIG": str(missing)})) == \
        f"error: PGKB_CONFIG names {missing}: no such file"


def test_a_folders_metadata_file_is_no_configuration(tmp_path, monkeypatch):
    """pgkb.toml is also ingest's folder metadata file: its [metadata] table is left alone,
    and a file of metadata alone configures nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgkb.toml").write_text('[metadata]\ndepartment = "finance"\n')
    assert Settings.from_env({}) == Settings()
    (tmp_path / "pgkb.toml").write_text('[metadata]\ndepartment = "finance"\n[settings]\ncollection = "finance"\n')
    assert Settings.from_env({}).collection == "finance"


def test_each_kind_of_setting_takes_its_toml_type(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgkb.toml").write_text('[settings]\ndata_dir = "~/kb"\npii = false\npii_threshold = 1\n'
                                        'workers = 2\npii_hash_key = "k3y"\n')
    loaded = Settings.from_env({})
    assert (loaded.data_dir, loaded.pii, loaded.pii_threshold, loaded.workers, loaded.pii_hash_key) == \
        (Path.home() / "kb", False, 1.0, 2, "k3y")
    assert Settings.from_env({"PGKB_WORKERS": "3"}, pii=True).workers == 3
    (tmp_path / "pgkb.toml").write_text('[settings]\npii_hash_key = 12345\n')
    with pytest.raises(ConfigurationError, match="pii_hash_key must be text in quotes, not a whole number$"):
        Settings.from_env({})


def test_a_settings_name_in_the_file_is_its_variable_without_pgkb_in_lower_case():
    """As the README says, so that a user can tell one from the other."""
    for setting in dataclasses.fields(Settings):
        if setting.metadata["env"]:
            assert setting.metadata["env"].lower().removeprefix("pgkb_") == setting.name
