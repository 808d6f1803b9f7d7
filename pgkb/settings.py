"""pgkb's configuration, in one place: every setting's default, environment variable,
command-line flag and help live on its field here, and nowhere else.

Each field can be set in the configuration file (pgkb/config_file.py: ./pgkb.toml or the
file PGKB_CONFIG names), by its environment variable, and by the caller, each overriding the
one before, which is how the CLI flags win over the environment and the file:

    settings = Settings.from_env(collection="handbook")

The command-line tools derive their flags from the fields (`Settings.add_arguments`), and
each stage gets a small options object built from Settings by the code that wires it
(ingest.options, `Settings.embedder_options`); a stage's own defaults, where it has any,
are read from here (`default`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import logging
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from pgkb import config_file
from pgkb.errors import ConfigurationError

Precision = Literal["auto", "float32", "bfloat16"]
KeyNames = Literal["mask", "keep"]
Unlabelled = Literal["public", "nobody"]  # who reads a document without an access tag
UrlMasking = Literal["keep", "mask"]
Engine = Literal["local", "ray"]
LoraUse = Literal["auto", "on", "off"]  # fine-tuning through LoRA adapters: by the model's size, always, never


def _setting(env: str | None, default: Any = None, *, flag: str | None = None, help: str = "",
             metavar: str | None = None, secret: bool = False) -> Any:
    """A setting read from the environment variable `env`, given on the command line by `flag`
    (a switch's flag names the non-default side: --no-pii, --follow-links); a secret one is
    hidden in repr()."""
    return field(default=default, repr=not secret,
                 metadata={"env": env, "flag": flag, "help": help, "metavar": metavar})


# The range of each numeric setting (None: unbounded), checked whenever Settings are made:
# a value out of range stops at once with the setting's name instead of misbehaving later
# (a chunk size of 0 made the chunker loop for ever). A chunk must hold its section path
# and some text, hence its floor.
NUMBER_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "batch_tokens": (1, None), "chunk_tokens": (32, None), "dims": (0, None), "workers": (0, None),
    "search_concurrency": (0, None),
    "parse_seconds": (1, None), "parse_memory_mb": (1, None), "pii_threshold": (0, 1),
    "bm25_k1": (0, None), "bm25_b": (0, 1), "max_document_chars": (1, None), "prune_max_share": (0, 1),
    "port": (0, 65535), "max_upload_bytes": (1, None), "max_upload_files": (1, None),
    "max_request_bytes": (1024, None), "ray_embedders": (0, None),
    "finetune_epochs": (0, None), "finetune_learning_rate": (0, 1), "finetune_batch_size": (2, None),
    "finetune_max_tokens": (8, None),
}


# The settings every command line takes as flags (ingest, search, pgkb eval).
COMMON_FLAGS = ("collection", "model", "database_url", "data_dir")
# Where the store is: the flags of the commands that need no model.
STORE_FLAGS = ("database_url", "data_dir")
# The reranking model (search and pgkb eval's --rerank N).
RERANK_FLAGS = ("rerank_model", "rerank_url")
# Fine-tuning the embedding model (`pgkb finetune`).
FINETUNE_FLAGS = ("finetune_epochs", "finetune_learning_rate", "finetune_batch_size", "finetune_max_tokens",
                  "finetune_lora", "finetune_seed")
# Searching a served API instead of the database (`search --url`).
REMOTE_FLAGS = ("url",)
# The HTTP API's own (`pgkb serve`).
SERVE_FLAGS = ("host", "port", "max_upload_bytes", "max_upload_files", "max_request_bytes", "log_json",
               "search_concurrency")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = _setting(
        "DATABASE_URL", flag="--database-url", secret=True,  # may hold a password
        help="any PostgreSQL with pgvector; unset: an embedded server in the data folder")
    # Root's home is often private, and as root the embedded server runs as another user.
    data_dir: Path = _setting(
        "PGKB_DATA_DIR", Path("/var/lib/pgkb") if os.name == "posix" and os.geteuid() == 0
        else Path(platformdirs.user_data_dir("pgkb")),
        flag="--data-dir", help="the embedded server's data folder")
    # Searches only (search, pgkb serve, pgkb eval): writes always go to database_url.
    database_url_replicas: str | None = _setting(
        "DATABASE_URL_REPLICAS", secret=True,  # passwords: never a flag, which the process list shows
        help="read-only replicas of DATABASE_URL, comma-separated, that searches are spread over; a replica "
             "that is unreachable or behind a collection's last ingest run is passed over for the primary")
    collection: str = _setting("PGKB_COLLECTION", "default", flag="--collection", help="collection name")
    model: str = _setting("PGKB_MODEL", "sentence-transformers/all-MiniLM-L6-v2", flag="--model",
                          help="embedding model: an id in the Hugging Face cache, or a local directory")
    device: str = _setting("PGKB_DEVICE", "auto", flag="--device", help="cpu, cuda, cuda:1 or auto")
    # "auto" is bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), float32 elsewhere.
    precision: Precision = _setting("PGKB_PRECISION", "auto", help="the model's number format")
    # The batch size adapts to text length.
    batch_tokens: int = _setting("PGKB_BATCH_TOKENS", 16384, flag="--batch-tokens",
                                 help="tokens per embedding batch, padding included")
    chunk_tokens: int = _setting("PGKB_CHUNK_TOKENS", 400, flag="--chunk-tokens",
                                 help="target chunk size in model tokens, capped by what the model reads")
    # The stored text is the same either way.
    embed_headings: bool = _setting("PGKB_EMBED_HEADINGS", True, flag="--no-embed-headings",
                                    help="embed each chunk's text alone, not its section path first")
    # Only for models trained for shorter (Matryoshka) vectors, e.g. Qwen3-Embedding's 32 up
    # to its full size.
    dims: int = _setting("PGKB_DIMS", 0, flag="--dims",
                         help="shorter (Matryoshka) vectors for models trained for them, e.g. 256; "
                              "0: the model's full size")
    # One setting for two models' ways: Qwen3-Embedding's query template takes a task, other
    # models take text put before each query. Either way the resulting prefix is stored with
    # the collection (EmbeddingSpace.query_instruction), so its searches use the same.
    query_instruction: str | None = _setting(
        "PGKB_QUERY_INSTRUCTION", flag="--query-instruction", metavar="TASK",
        help="for a model with an instruction template (Qwen3-Embedding), the task it names; for "
             "other models, the text put before every query; stored with the collection; unset: the "
             "model's own")
    embed_url: str | None = _setting(
        "PGKB_EMBED_URL", flag="--embed-url", metavar="URL",
        help="embed through an OpenAI-compatible server (vLLM, SGLang, TEI, Infinity) serving --model; "
             "its API key is read from the variable PGKB_EMBED_API_KEY_ENV names; unset: the model runs here")
    # The key itself is never a setting: it would show in the process list or a settings dump.
    embed_api_key_env: str = _setting("PGKB_EMBED_API_KEY_ENV", "PGKB_EMBED_API_KEY",
                                      help="the environment variable holding the embedding server's API key")
    model_profile: str | None = _setting(
        "PGKB_MODEL_PROFILE", help="a JSON file of rules for a model pgkb has none for (embedding/profiles.py)")
    allow_download: bool = _setting("PGKB_ALLOW_DOWNLOAD", False,
                                    help="let a model not on this machine be downloaded from the Hugging Face Hub")
    # Reranking (search --rerank N): a cross-encoder rescoring a search's top N candidates.
    rerank_model: str | None = _setting(
        "PGKB_RERANK_MODEL", flag="--rerank-model", metavar="MODEL",
        help="reranking model (a cross-encoder such as BAAI/bge-reranker-v2-m3, or Qwen3-Reranker): an id in the "
             "Hugging Face cache, or a local directory; with --rerank-url, the name the server is asked for")
    rerank_url: str | None = _setting(
        "PGKB_RERANK_URL", flag="--rerank-url", metavar="URL",
        help="rerank through a served /v1/rerank or /rerank endpoint (TEI, vLLM, SGLang, Jina, Cohere); its API "
             "key is read from the variable PGKB_RERANK_API_KEY_ENV names; unset: the model runs here")
    rerank_api_key_env: str = _setting("PGKB_RERANK_API_KEY_ENV", "PGKB_RERANK_API_KEY",
                                       help="the environment variable holding the reranking server's API key")
    rerank_profile: str | None = _setting(
        "PGKB_RERANK_PROFILE",
        help="a JSON file of rules for a reranking model pgkb has none for (embedding/rerank.py)")
    workers: int = _setting("PGKB_WORKERS", 0, flag="--workers",
                            help="files parsed at once, each in its own process, at most one per CPU core; "
                                 "0: one per CPU core, at most 4")
    # Ray (ingest.ray_engine): parsing, masking and chunking as tasks, embedding in actors; the
    # driver still reads every file once (its hash) and writes every document.
    engine: Engine = _setting("PGKB_ENGINE", "local", flag="--engine",
                              help="run the stages in this process and its workers (local), or on a Ray cluster "
                                   "(ray: pip install 'pgkb[ray]'; the folder must be on storage every node mounts)")
    ray_address: str | None = _setting(
        "PGKB_RAY_ADDRESS", flag="--ray-address", metavar="ADDR",
        help="the Ray cluster --engine ray uses (ray://HOST:10001, HOST:6379 or auto); unset: a cluster of this "
             "machine alone, on 127.0.0.1")
    ray_embedders: int = _setting("PGKB_RAY_EMBEDDERS", 0,
                                  help="embedding actors --engine ray starts, each loading the model once; "
                                       "0: one per GPU of the cluster, or one on CPUs where it has none")
    # Fine-tuning the embedding model (pgkb finetune, embedding/finetune.py).
    finetune_epochs: float = _setting("PGKB_FINETUNE_EPOCHS", 1.0, flag="--epochs",
                                      help="passes over the training triplets")
    finetune_learning_rate: float = _setting("PGKB_FINETUNE_LEARNING_RATE", 2e-5, flag="--learning-rate",
                                             metavar="RATE", help="the optimiser's peak learning rate")
    # Each query's negatives are its own hard ones and every other text of its batch.
    finetune_batch_size: int = _setting("PGKB_FINETUNE_BATCH_SIZE", 32, flag="--train-batch-size", metavar="N",
                                        help="triplets per training step")
    finetune_max_tokens: int = _setting("PGKB_FINETUNE_MAX_TOKENS", 256, flag="--train-max-tokens", metavar="N",
                                        help="training texts are cut to this many tokens (and to what the model "
                                             "reads)")
    finetune_lora: LoraUse = _setting("PGKB_FINETUNE_LORA", "auto", flag="--lora",
                                      help="train LoRA adapters instead of every weight: on, off, or auto (for "
                                           "models above 300M parameters)")
    finetune_seed: int = _setting("PGKB_FINETUNE_SEED", 0, flag="--train-seed", metavar="N",
                                  help="seed of the training run's initialisation and order")
    # Past these limits a file fails alone.
    parse_seconds: int = _setting("PGKB_PARSE_SECONDS", 300, help="time limit to parse one file")
    parse_memory_mb: int = _setting("PGKB_PARSE_MEMORY_MB", 4096,
                                    help="memory (address space) limit of a parser worker")
    # 20 million: some 8,000 pages of dense text. A larger document is refused in its worker,
    # before the main process holds any of it.
    max_document_chars: int = _setting("PGKB_MAX_DOCUMENT_CHARS", 20_000_000,
                                       help="the most characters of text one document may hold")
    ocr_languages: str = _setting(
        "PGKB_OCR_LANGUAGES", "eng+chi_sim",
        help="Tesseract languages for PDF pages without a text layer, used when tesseract is installed "
             "(none: no OCR)")
    passwords_file: str | None = _setting("PGKB_PASSWORDS_FILE", flag="--passwords-file", metavar="FILE",
                                          help="a file of passwords to try on encrypted PDFs, one per line")
    # Never from the environment, which other processes of the user can read.
    passwords: tuple[str, ...] = _setting(None, (), secret=True, help="passwords to try on encrypted PDFs")
    pii: bool = _setting("PGKB_PII", True, flag="--no-pii",
                         help="store text unmasked: no personal data masking")
    pii_entities: str = _setting("PGKB_PII_ENTITIES", "all", flag="--pii-entities", metavar="TYPES",
                                 help='entity types to mask: "all" or a comma list, "-TYPE" removes one, '
                                      "e.g. all,-URL")
    # A knowledge base cites its links, and a public address is no one's personal data.
    pii_urls: UrlMasking = _setting(
        "PGKB_PII_URLS", "keep", flag="--pii-urls",
        help="keep web addresses in text (personal data in one, such as an e-mail address, is masked all the "
             "same) or mask every one as <URL>")
    pii_threshold: float = _setting("PGKB_PII_THRESHOLD", 0.5, flag="--pii-threshold", metavar="SCORE",
                                    help="lowest score that is masked, 0 to 1")
    pii_operators: str = _setting(
        "PGKB_PII_OPERATORS", "replace", flag="--pii-operator", metavar="OPERATORS",
        help="replace (<TYPE>), redact or hash, and per type TYPE=OPERATOR, e.g. replace,EMAIL_ADDRESS=hash; "
             "hash needs PGKB_PII_HASH_KEY")
    pii_hash_key: str | None = _setting("PGKB_PII_HASH_KEY", secret=True, help="the hash operator's secret key")
    pii_keys: KeyNames = _setting(
        "PGKB_PII_KEYS", "mask", flag="--pii-keys",
        help="mask personal data in file and folder names, which make the documents' keys and paths, "
             "or keep the real ones")
    pii_spacy_models: str = _setting(
        "PGKB_PII_SPACY_MODELS", "en:en_core_web_sm,zh:zh_core_web_sm",
        help="spaCy NER models by language (names, places, organisations), used when installed; none: no model")
    # k1: how soon a word's repeats in a chunk stop adding to its score; b: how much a long
    # chunk's length discounts its matches (0: not at all, to 1: fully).
    bm25_k1: float = _setting("PGKB_BM25_K1", 1.2, help="BM25's saturation of repeated words")
    bm25_b: float = _setting("PGKB_BM25_B", 0.75, help="BM25's length discount, 0 to 1")
    # Links within the folder are read either way.
    follow_links: bool = _setting("PGKB_FOLLOW_LINKS", False, flag="--follow-links",
                                  help="read symbolic links that lead out of the folder")
    # More looks like a folder unmounted, emptied or mistyped.
    prune_max_share: float = _setting("PGKB_PRUNE_MAX_SHARE", 0.5,
                                      help="the largest share of a collection one --prune removes without --yes")
    # Access control (store.access): what a new collection does with documents that have no
    # `access` tag; `pgkb access` changes it for an existing one.
    unlabelled: Unlabelled = _setting("PGKB_UNLABELLED", "public", flag="--unlabelled",
                                      help="who reads a new collection's documents without an access tag")
    # The HTTP API (`pgkb serve`). Loopback by default: put a TLS proxy in front to share it.
    host: str = _setting("PGKB_HOST", "127.0.0.1", flag="--host", help="the address the API listens on")
    port: int = _setting("PGKB_PORT", 8000, flag="--port", help="the port the API listens on (0: any free one)")
    max_upload_bytes: int = _setting("PGKB_MAX_UPLOAD_BYTES", 256 * 1024 * 1024, flag="--max-upload-bytes",
                                     metavar="BYTES", help="the most bytes one upload request carries")
    max_upload_files: int = _setting("PGKB_MAX_UPLOAD_FILES", 500, flag="--max-upload-files", metavar="N",
                                     help="the most files one upload request carries")
    max_request_bytes: int = _setting("PGKB_MAX_REQUEST_BYTES", 1024 * 1024, flag="--max-request-bytes",
                                      metavar="BYTES", help="the most bytes any other request carries")
    log_json: bool = _setting("PGKB_LOG_JSON", False, flag="--log-json", help="log one JSON object per line")
    search_concurrency: int = _setting("PGKB_SEARCH_CONCURRENCY", 0, flag="--search-concurrency", metavar="N",
                                       help="searches the API runs at once, the others waiting their turn "
                                            "(0: one per CPU core)")
    # `search --url`: a served API instead of the database (no model loads here: it answers at once).
    url: str | None = _setting("PGKB_URL", flag="--url", metavar="URL",
                               help="search a running pgkb serve at URL instead of the database")
    # Never a flag: the process list would show it.
    api_key: str | None = _setting("PGKB_API_KEY", secret=True, help="the API key search --url sends")

    def __post_init__(self) -> None:
        for name, (lowest, highest) in NUMBER_BOUNDS.items():
            _check_bounds(name, getattr(self, name), lowest, highest)
        for setting in dataclasses.fields(self):
            choices = _choices(setting)
            if choices and getattr(self, setting.name) not in choices:
                raise ConfigurationError(
                    f"{setting.metadata['env']} must be {', '.join(choices[:-1])} or {choices[-1]}, "
                    f"got {getattr(self, setting.name)!r} (setting {setting.name})")

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the configuration file, then the environment, then `overrides` that
        are not None."""
        env = os.environ if env is None else env
        path = config_file.find(env)
        values = _file_values(path) if path else {}
        for setting in dataclasses.fields(cls):
            raw = env.get(setting.metadata["env"]) if setting.metadata["env"] else None
            if raw not in (None, ""):
                values[setting.name] = _convert(setting, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: Iterable[str]) -> None:
        """A flag for each setting in `names`, its help from the field: what it does, its
        environment variable and its default. An absent flag leaves the environment's value."""
        for name in names:
            setting = Settings.__dataclass_fields__[name]
            flag, env, default = setting.metadata["flag"], setting.metadata["env"], setting.default
            flags = ["-c", flag] if name == "collection" else [flag]
            if _kind(setting) is bool:
                parser.add_argument(*flags, dest=name, action="store_const", const=not default,
                                    help=f"{setting.metadata['help']} ({env}={int(not default)}; "
                                         f"default: {'on' if default else 'off'})")
                continue
            shown = "" if default is None else f"; default: {default}"
            parser.add_argument(*flags, dest=name, type=functools.partial(_convert, setting),
                                choices=_choices(setting), metavar=setting.metadata["metavar"],
                                help=f"{setting.metadata['help']} ({env}{shown})")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **more: Any) -> Settings:
        """Settings from the environment, overridden by the flags `add_arguments` made and `more`."""
        flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls.from_env(**flags, **more)

    def embedder_options(self) -> dict:
        """How to run the embedding model, for `embedding.load_embedder[_for_space]`."""
        return {"device": self.device, "precision": self.precision, "batch_tokens": self.batch_tokens,
                "embed_url": self.embed_url, "api_key_env": self.embed_api_key_env,
                "profile_file": self.model_profile, "allow_download": self.allow_download}


    def training_options(self) -> dict:
        """How to fine-tune the embedding model, for `embedding.finetune.TrainingOptions`."""
        return {"epochs": self.finetune_epochs, "learning_rate": self.finetune_learning_rate,
                "batch_size": self.finetune_batch_size, "max_tokens": self.finetune_max_tokens,
                "lora": self.finetune_lora, "seed": self.finetune_seed, "device": self.device}

    def reranker_options(self) -> dict:
        """Which reranker to run and how, for `embedding.load_reranker`."""
        return {"model": self.rerank_model, "url": self.rerank_url, "api_key_env": self.rerank_api_key_env,
                "profile_file": self.rerank_profile, "device": self.device, "precision": self.precision,
                "batch_tokens": self.batch_tokens, "allow_download": self.allow_download}


def cpu_cores() -> int:
    """The CPU cores this process may run on: what "0: one per CPU core" settings count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default(name: str) -> Any:
    """The default of setting `name`: what a stage's own options default to, so that a default
    has one home."""
    return Settings.__dataclass_fields__[name].default


def configure_logging(verbose: bool) -> None:
    """Logging for the command-line tools: warnings only, unless asked for more."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Third-party chatter that says nothing to a user of pgkb.
    for name in ("pgserver", "alembic", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def _named(setting: dataclasses.Field) -> str:
    env = setting.metadata["env"]
    return f"{setting.name} ({env})" if env else setting.name


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _type(setting: dataclasses.Field) -> Any:
    """The field's type, without its "| None"."""
    hint = _hints()[setting.name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _kind(setting: dataclasses.Field) -> type:
    """What a raw value of the setting converts to: bool, int, float, Path or str."""
    hint = _type(setting)
    return str if typing.get_origin(hint) is Literal else hint


def _choices(setting: dataclasses.Field) -> tuple[str, ...] | None:
    hint = _type(setting)
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _check_bounds(name: str, value: Any, lowest: float | None, highest: float | None) -> None:
    setting = Settings.__dataclass_fields__[name]
    kinds = int if _kind(setting) is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if kinds is int else "a number"
        raise ConfigurationError(f"setting {_named(setting)} must be {kind}, got {value!r}")
    if lowest is not None and not value >= lowest:  # "not >=" also refuses NaN
        raise ConfigurationError(f"setting {_named(setting)} must be at least {lowest}, got {value!r}")
    if highest is not None and not value <= highest:
        raise ConfigurationError(f"setting {_named(setting)} must be at most {highest}, got {value!r}")


def _file_values(path: Path) -> dict[str, Any]:
    """The configuration file's settings, each checked: a known name, a value of its kind,
    in range. Every setting that has an environment variable may be there (passwords are
    not: they go in a passwords_file of their own)."""
    table = config_file.read_settings(path)
    fields = {f.name: f for f in dataclasses.fields(Settings) if f.metadata["env"]}
    unknown = [name for name in table if name not in fields]
    if unknown:
        raise ConfigurationError(f"{path}: unknown setting {', '.join(map(_with_suggestion, unknown))} "
                                 f"in [{config_file.SETTINGS_TABLE}]")
    values = {name: _from_file(path, fields[name], value) for name, value in table.items()}
    try:
        Settings(**values)  # their ranges and choices, the error naming the file
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    return values


def _with_suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, [f.name for f in dataclasses.fields(Settings)], n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name


def _from_file(path: Path, setting: dataclasses.Field, value: Any) -> Any:
    """A setting's value as TOML typed it, which must be the setting's kind. The error says
    which kind it got, never the value (a secret's)."""
    kind = _kind(setting)
    if kind is bool:
        fits, wanted = isinstance(value, bool), "true or false"
    elif kind is int:
        fits, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif kind is float:
        fits, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        fits, wanted = isinstance(value, str), "text in quotes"
    if not fits:
        raise ConfigurationError(f"{path}: setting {setting.name} must be {wanted}, not {_toml_kind(value)}")
    if kind is Path:
        return Path(value).expanduser()
    return float(value) if kind is float else value


def _toml_kind(value: Any) -> str:
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "an array",
             dict: "a table"}
    return kinds.get(type(value), "a date or time")


def _convert(setting: dataclasses.Field, raw: str) -> Any:
    """A setting's value from its text (an environment variable's or a flag's)."""
    name, kind = setting.name, _kind(setting)
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
    if kind is Path:
        return Path(raw).expanduser()
    return raw
