"""Each ingest stage's options, built from Settings: the parsers and the masker take these
small objects and never read Settings themselves."""

from __future__ import annotations

from pathlib import Path

from pgkb.errors import ConfigurationError
from pgkb.settings import Settings

from .parsers import ParseOptions
from .parsers.pool import ParseLimits
from .pii import MaskerOptions, MaskPolicy


def parse_options(settings: Settings) -> ParseOptions:
    """What the parsers need: the passwords given directly and those in the passwords file,
    the OCR languages and the size limit of a document."""
    passwords = list(settings.passwords)
    if settings.passwords_file:
        path = Path(settings.passwords_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigurationError(f"passwords file {path}: {exc.strerror or exc}") from None
        passwords += [line for line in lines if line.strip()]
    return ParseOptions(passwords=tuple(dict.fromkeys(passwords)), ocr_languages=settings.ocr_languages,
                        max_chars=settings.max_document_chars)


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(settings.parse_seconds, settings.parse_memory_mb)


def mask_policy(settings: Settings) -> MaskPolicy:
    """The masking policy the settings describe; ConfigurationError when they are inconsistent.
    Whether URLs are masked is PGKB_PII_URLS's to say, whatever the entity list names."""
    entities = settings.pii_entities if settings.pii_urls == "mask" else f"{settings.pii_entities},-URL"
    return MaskPolicy.parse(entities, settings.pii_threshold, settings.pii_operators, settings.pii_hash_key)


def masker_options(settings: Settings) -> MaskerOptions:
    return MaskerOptions(mask_policy(settings), settings.pii_spacy_models, scope=settings.collection)
