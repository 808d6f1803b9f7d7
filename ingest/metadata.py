"""Metadata the user attaches to documents (department, access group, dates...), for search filters.

Three sources, each overriding the one before:
1. `pgkb.toml` or `pgkb.yaml` in a folder: its `[metadata]` table applies to every file in that
   folder and below (a deeper folder's keys override a shallower one's);
2. a sidecar next to a file, `report.pdf.meta.json`: a JSON object for that file alone;
3. `--tag key=value` on the command line, for every file of the run (values are strings: use a
   sidecar or folder file for numbers, lists and dates).
"""

from __future__ import annotations

import errno
import json
import tomllib
from collections.abc import Callable
from datetime import date, time
from pathlib import Path
from typing import Any

from pgkb.errors import ConfigurationError

FOLDER_FILES = ("pgkb.toml", "pgkb.yaml", "pgkb.yml")
SIDECAR_SUFFIX = ".meta.json"
# Metadata files are a few lines; a larger one is refused before it is parsed.
MAX_METADATA_BYTES = 1 << 20


class MetadataError(ConfigurationError):
    """A metadata file or tag that cannot be read; the message names it."""


def is_metadata_file(path: Path) -> bool:
    return path.name in FOLDER_FILES or path.name.endswith(SIDECAR_SUFFIX)


def parse_tags(tags: list[str]) -> dict[str, str]:
    """`["department=finance", ...]` -> {"department": "finance", ...}."""
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip():
            raise MetadataError(f"--tag takes KEY=VALUE, not {tag!r}")
        parsed[key.strip()] = value.strip()
    return parsed


class UserMetadata:
    """The user's metadata for each file of one run from `root`; folder files are read once."""

    def __init__(self, root: Path, tags: dict[str, Any], follow_links: bool = False):
        self.root = root if root.is_dir() else root.parent
        self.tags = tags
        self.follow_links = follow_links
        self._folders: dict[Path, dict[str, Any]] = {}

    def for_file(self, path: Path) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        folder = self.root
        merged.update(self._folder(folder))
        for part in path.parent.relative_to(self.root).parts:
            folder = folder / part
            merged.update(self._folder(folder))
        sidecar = _sidecar(path)
        if sidecar:
            merged.update(_read_mapping(self._inside(sidecar), json.loads))
        merged.update(self.tags)
        return merged

    def _folder(self, folder: Path) -> dict[str, Any]:
        if folder not in self._folders:
            self._folders[folder] = _folder_metadata(folder, self._inside)
        return self._folders[folder]

    def _inside(self, path: Path) -> Path:
        """`path`, unless it is a link out of the folder and links are not followed: its
        content would become tags (a link to another folder's secrets, say)."""
        from .sources import leads_out  # here: sources imports this module

        if not self.follow_links and leads_out(path, self.root):
            raise MetadataError(f"{path.name}: a link out of the folder (--follow-links reads it)")
        return path


def _folder_metadata(folder: Path, inside: Callable[[Path], Path]) -> dict[str, Any]:
    for name in FOLDER_FILES:
        config = folder / name
        if config.is_file():
            document = _read_mapping(inside(config), tomllib.loads if name.endswith(".toml") else _yaml_loads)
            metadata = document.get("metadata", {})
            if not isinstance(metadata, dict):
                raise MetadataError(f"{config}: 'metadata' must be a table of key = value")
            return metadata
    return {}


def _sidecar(path: Path) -> Path | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        return sidecar if sidecar.is_file() else None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # the file's name leaves no room for a sidecar's
            return None
        raise


def _read_mapping(path: Path, loader: Callable[[str], Any]) -> dict[str, Any]:
    """The file's mapping as it will read back from the database (JSON): TOML and YAML dates
    become ISO text."""
    text = _read_text(path)
    try:
        value = loader(text)
    except Exception as exc:  # JSON, TOML and YAML each raise their own kind
        raise MetadataError(f"{path.name}: cannot read it ({_problem(exc)})") from None
    if not isinstance(value, dict):
        raise MetadataError(f"{path.name}: expected a mapping of key -> value")
    try:
        return json.loads(json.dumps(value, default=_iso_date))
    except (TypeError, ValueError, RecursionError) as exc:  # YAML reads `2024-01-01:` as a date key
        raise MetadataError(f"{path.name}: cannot be stored as JSON ({exc}); quote dates used as keys") from None


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    except OSError as exc:
        raise MetadataError(f"{path.name}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"{path.name}: larger than {MAX_METADATA_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None


def _problem(exc: Exception) -> str:
    """What is wrong with a metadata file, without quoting its content (which YAML's messages do)."""
    import yaml  # imported where it is needed, as in _yaml_loads

    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{type(exc).__name__}: {exc}"
    mark = exc.problem_mark
    problem = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context and exc.context_mark:
        problem += f" ({exc.context} from line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    return problem


def _iso_date(value: Any) -> str:
    if isinstance(value, (date, time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _yaml_loads(text: str) -> Any:
    import yaml

    class NoAliases(yaml.SafeLoader):
        """YAML without aliases (`*name`): a few of them nested expand 500 bytes to gigabytes."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliases) or {}
