"""pgkb's configuration, in one place.

Every field can be set by an environment variable (named in the field's metadata) and
overridden by the caller, which is how the CLI flags win over the environment:

    settings = Settings.from_env(collection="handbook")
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs


def _env(name: str, default=None):
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    # Any PostgreSQL with pgvector; when unset, pgkb runs an embedded server in data_dir.
    database_url: str | None = _env("DATABASE_URL")
    data_dir: Path = _env("PGKB_DATA_DIR", Path(platformdirs.user_data_dir("pgkb")))
    collection: str = _env("PGKB_COLLECTION", "default")
    model: str = _env("PGKB_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
    device: str = _env("PGKB_DEVICE", "auto")
    # Tokens per embedding batch (padding included): the batch size adapts to text length.
    batch_tokens: int = _env("PGKB_BATCH_TOKENS", 16384)
    # Target chunk size in the embedding model's tokens, capped by what the model reads.
    chunk_tokens: int = _env("PGKB_CHUNK_TOKENS", 400)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Settings from the environment, then `overrides` that are not None."""
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw not in (None, ""):
                values[f.name] = _convert(f.name, raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The flags `ingest` and `search` share; each overrides its environment variable."""
        parser.add_argument("-c", "--collection", help="collection name (PGKB_COLLECTION, default: default)")
        parser.add_argument("--model", help="embedding model id or local path (PGKB_MODEL)")
        parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); default: embedded server")
        parser.add_argument("--data-dir", help="embedded server's data folder (PGKB_DATA_DIR)")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **more) -> "Settings":
        """Settings from the environment, overridden by the shared flags and `more`."""
        return cls.from_env(collection=args.collection, model=args.model,
                            database_url=args.database_url,
                            data_dir=Path(args.data_dir).expanduser() if args.data_dir else None, **more)


def configure_logging(verbose: bool) -> None:
    """Logging for the command-line tools: warnings only, unless asked for more."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Third-party chatter that says nothing to a user of pgkb.
    for name in ("pgserver", "alembic", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def _convert(name: str, raw: str, kind: type):
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"setting {name} must be a whole number, got {raw!r}") from None
    if issubclass(kind, Path):
        return Path(raw).expanduser()
    return raw
