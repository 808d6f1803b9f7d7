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

from pgkb.errors import ConfigurationError


def _env(name: str, default=None, secret: bool = False):
    """A setting read from the environment variable `name`; a secret one is hidden in repr()."""
    return field(default=default, repr=not secret, metadata={"env": name})


# The range of each numeric setting (None: unbounded), checked whenever Settings are made:
# a value out of range stops at once with the setting's name instead of misbehaving later
# (a chunk size of 0 made the chunker loop for ever). A chunk must hold its section path
# and some text, hence its floor.
NUMBER_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "batch_tokens": (1, None), "chunk_tokens": (32, None), "dims": (0, None), "workers": (0, None),
    "parse_seconds": (1, None), "parse_memory_mb": (1, None), "pii_threshold": (0, 1),
    "bm25_k1": (0, None), "bm25_b": (0, 1), "max_document_chars": (1, None), "prune_max_share": (0, 1),
}


@dataclass(frozen=True)
class Settings:
    # Any PostgreSQL with pgvector; when unset, pgkb runs an embedded server in data_dir.
    database_url: str | None = _env("DATABASE_URL", secret=True)  # may hold a password
    # Root's home is often private, and as root the embedded server runs as another user.
    data_dir: Path = _env("PGKB_DATA_DIR", Path("/var/lib/pgkb") if os.name == "posix" and os.geteuid() == 0
                          else Path(platformdirs.user_data_dir("pgkb")))
    collection: str = _env("PGKB_COLLECTION", "default")
    model: str = _env("PGKB_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
    device: str = _env("PGKB_DEVICE", "auto")
    # The model's number format: "auto" is bf16 on CUDA and on CPUs with native bf16
    # (AVX512-BF16, AMX), float32 elsewhere; "float32" or "bfloat16" to choose.
    precision: str = _env("PGKB_PRECISION", "auto")
    # Tokens per embedding batch (padding included): the batch size adapts to text length.
    batch_tokens: int = _env("PGKB_BATCH_TOKENS", 16384)
    # Target chunk size in the embedding model's tokens, capped by what the model reads.
    chunk_tokens: int = _env("PGKB_CHUNK_TOKENS", 400)
    # Whether the model reads a chunk's section path before its text (stored text is the same).
    embed_headings: bool = _env("PGKB_EMBED_HEADINGS", True)
    # Vector size for models trained for shorter (Matryoshka) vectors, e.g. Qwen3-Embedding's
    # 32 up to its full size; 0: the model's full size.
    dims: int = _env("PGKB_DIMS", 0)
    # The task in an instruction-following model's query template (Qwen3-Embedding), or else
    # the literal prefix of every query; unset: the model's own default.
    query_instruction: str | None = _env("PGKB_QUERY_INSTRUCTION")
    # An OpenAI-compatible embeddings server (vLLM, SGLang, TEI, Infinity, OpenAI) serving
    # `model`; unset: the model runs in this process.
    embed_url: str | None = _env("PGKB_EMBED_URL")
    # The environment variable holding the server's API key (the key is never a setting itself).
    embed_api_key_env: str = _env("PGKB_EMBED_API_KEY_ENV", "PGKB_EMBED_API_KEY")
    # A JSON file of rules for a model pgkb has none for (see embedding/profiles.py).
    model_profile: str | None = _env("PGKB_MODEL_PROFILE")
    # Let a model that is not on this machine be downloaded from the Hugging Face Hub.
    allow_download: bool = _env("PGKB_ALLOW_DOWNLOAD", False)
    # Files parsed at once, each in its own worker process; 0: one per CPU core, at most 4.
    workers: int = _env("PGKB_WORKERS", 0)
    # Each file is parsed in a worker process under these limits; past them it fails alone.
    parse_seconds: int = _env("PGKB_PARSE_SECONDS", 300)
    parse_memory_mb: int = _env("PGKB_PARSE_MEMORY_MB", 4096)
    # The most characters of text one document may hold (20 million: some 8,000 pages of dense
    # text); a larger one fails alone as "too large", refused in its worker before the main
    # process holds any of it.
    max_document_chars: int = _env("PGKB_MAX_DOCUMENT_CHARS", 20_000_000)
    # Tesseract languages for PDF pages without a text layer, used when tesseract is installed ("none": no OCR).
    ocr_languages: str = _env("PGKB_OCR_LANGUAGES", "eng+chi_sim")
    # Passwords tried on encrypted PDFs: a file with one per line, and --password (never from the environment).
    passwords_file: str | None = _env("PGKB_PASSWORDS_FILE")
    passwords: tuple[str, ...] = field(default=(), repr=False, metadata={"env": None})
    # Personal data masking before anything is embedded or stored (ingest.pii): on unless
    # PGKB_PII=0 or --no-pii. Entity types: "all" or a comma list ("-URL" removes one).
    pii: bool = _env("PGKB_PII", True)
    pii_entities: str = _env("PGKB_PII_ENTITIES", "all")
    pii_threshold: float = _env("PGKB_PII_THRESHOLD", 0.5)
    # replace (<TYPE>), redact or hash (keyed, needs pii_hash_key); per type: "replace,EMAIL_ADDRESS=hash".
    pii_operators: str = _env("PGKB_PII_OPERATORS", "replace")
    pii_hash_key: str | None = _env("PGKB_PII_HASH_KEY", secret=True)
    # Document keys and paths: "mask" (file and folder names are masked like text) or "keep".
    pii_keys: str = _env("PGKB_PII_KEYS", "mask")
    # spaCy NER models by language (or "none"), used when installed: names, places, organisations.
    pii_spacy_models: str = _env("PGKB_PII_SPACY_MODELS", "en:en_core_web_sm,zh:zh_core_web_sm")
    # BM25 keyword ranking: k1, how soon a word's repeats in a chunk stop adding to its score;
    # b, how much a long chunk's length discounts its matches (0: not at all, to 1: fully).
    bm25_k1: float = _env("PGKB_BM25_K1", 1.2)
    bm25_b: float = _env("PGKB_BM25_B", 0.75)
    # Whether a symbolic link in the ingested folder to a file or folder outside it is read
    # (links within the folder are read either way).
    follow_links: bool = _env("PGKB_FOLLOW_LINKS", False)
    # The largest share of a collection's documents one --prune removes without --yes: more
    # looks like a folder unmounted, emptied or mistyped.
    prune_max_share: float = _env("PGKB_PRUNE_MAX_SHARE", 0.5)

    def __post_init__(self) -> None:
        for name, (lowest, highest) in NUMBER_BOUNDS.items():
            _check_bounds(name, getattr(self, name), lowest, highest)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        """Settings from the environment, then `overrides` that are not None."""
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"]) if f.metadata["env"] else None
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
    def from_arguments(cls, args: argparse.Namespace, **more) -> Settings:
        """Settings from the environment, overridden by the shared flags and `more`."""
        return cls.from_env(collection=args.collection, model=args.model,
                            database_url=args.database_url,
                            data_dir=Path(args.data_dir).expanduser() if args.data_dir else None, **more)

    def embedder_options(self) -> dict:
        """How to run the embedding model, for `embedding.load_embedder[_for_space]`."""
        return {"device": self.device, "precision": self.precision, "batch_tokens": self.batch_tokens, "embed_url": self.embed_url,
                "api_key_env": self.embed_api_key_env, "profile_file": self.model_profile,
                "allow_download": self.allow_download}


def configure_logging(verbose: bool) -> None:
    """Logging for the command-line tools: warnings only, unless asked for more."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Third-party chatter that says nothing to a user of pgkb.
    for name in ("pgserver", "alembic", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def _check_bounds(name: str, value, lowest: float | None, highest: float | None) -> None:
    setting = Settings.__dataclass_fields__[name]
    env = setting.metadata["env"]
    kinds = int if type(setting.default) is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if kinds is int else "a number"
        raise ConfigurationError(f"setting {name} ({env}) must be {kind}, got {value!r}")
    if lowest is not None and not value >= lowest:  # "not >=" also refuses NaN
        raise ConfigurationError(f"setting {name} ({env}) must be at least {lowest}, got {value!r}")
    if highest is not None and not value <= highest:
        raise ConfigurationError(f"setting {name} ({env}) must be at most {highest}, got {value!r}")


def _convert(name: str, raw: str, kind: type):
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"setting {name} must be on or off (1/0, true/false), got {raw!r}")
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"setting {name} must be a number, got {raw!r}") from None
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"setting {name} must be a whole number, got {raw!r}") from None
    if issubclass(kind, Path):
        return Path(raw).expanduser()
    return raw
