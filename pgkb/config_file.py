"""The configuration file: settings written once for every command run from a folder.

`pgkb.toml` in the working directory, or the file the variable PGKB_CONFIG names, holds
settings in its [settings] table, each named as its environment variable without PGKB_, in
lower case:

    [settings]
    collection = "handbook"
    data_dir = "/srv/pgkb"
    pii_entities = "all,-URL"

`pgkb.toml` is also the name of a folder's metadata file for ingest (its [metadata] table,
ingest/metadata.py), so the file may hold that table too, which settings leave alone. Any
other table or key is refused by name: a typo must not be silently ignored.

This module finds and reads the file; pgkb.settings checks and converts its values.
"""

from __future__ import annotations

import logging
import tomllib
import typing
from pathlib import Path
from typing import Any

from pgkb.errors import ConfigurationError

CONFIG_VARIABLE = "PGKB_CONFIG"
FILE_NAME = "pgkb.toml"
SETTINGS_TABLE = "settings"
# The tables the file may hold: its settings, and a folder's metadata for ingest.
TABLES = (SETTINGS_TABLE, "metadata")
# A configuration file is a few lines; a larger one is refused before it is parsed.
MAX_BYTES = 1 << 20

log = logging.getLogger(__name__)


def find(env: typing.Mapping[str, str]) -> Path | None:
    """The file PGKB_CONFIG names (which must exist), else pgkb.toml in the working directory
    if there is one."""
    named = env.get(CONFIG_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            reason = "a folder" if path.is_dir() else "no such file"
            raise ConfigurationError(f"{CONFIG_VARIABLE} names {named}: {reason}")
        return path
    local = Path(FILE_NAME)
    return local if local.is_file() else None


def read_settings(path: Path) -> dict[str, Any]:
    """The file's [settings] table, as TOML typed it; {} when it has none."""
    document = _parse(path)
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise ConfigurationError(f"{path}: unknown key {', '.join(unknown)} (settings go in its "
                                 f"[{SETTINGS_TABLE}] table; [metadata] is a folder's metadata for ingest)")
    table = document.get(SETTINGS_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: '{SETTINGS_TABLE}' must be a table of name = value")
    log.info("settings from %s: %s", path, ", ".join(table) or "none")
    return table


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the configuration file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigurationError(f"{path}: larger than {MAX_BYTES >> 20} MiB, not a configuration file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:  # says where, never quotes the text (which may hold a secret)
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None
