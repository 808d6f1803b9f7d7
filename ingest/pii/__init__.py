"""Personal data masking, before anything is embedded, indexed or stored.

Runs on a parsed document's element texts, table HTML and file metadata, before chunking,
so chunk texts, section paths, titles and metadata only ever hold masked text. Built on
Presidio's analyzer with recognizers for Chinese and English data (recognizers.py, with the
checksums in checksums.py), set up to run offline (engine.py); the policy and the masking
itself are in masker.py; keys, paths, tags and error texts are masked in outputs.py.
"""

from __future__ import annotations

import logging

from pgkb.settings import Settings

from .masker import ENTITY_TYPES, OPERATORS, Found, Masker, MaskingError, MaskPolicy
from .outputs import KeyCollision, OutputMasker, masks_keys

log = logging.getLogger(__name__)

__all__ = ["ENTITY_TYPES", "OPERATORS", "Found", "KeyCollision", "Masker", "MaskingError", "MaskPolicy",
           "OutputMasker", "load_masker", "masks_keys", "policy_from_settings"]


def policy_from_settings(settings: Settings) -> MaskPolicy:
    """The masking policy the settings describe; ValueError when they are inconsistent."""
    return MaskPolicy.parse(settings.pii_entities, settings.pii_threshold, settings.pii_operators,
                            settings.pii_hash_key)


def load_masker(settings: Settings) -> Masker | None:
    """The masker for `settings.collection`, or None when masking is off (`--no-pii`)."""
    if not settings.pii:
        log.info("personal data masking is off")
        return None
    from .engine import build_analyzer  # Presidio and spaCy: seconds to import, so only here

    policy = policy_from_settings(settings)
    analyzer, ner_languages = build_analyzer(_spacy_models(settings.pii_spacy_models))
    return Masker(analyzer, policy, scope=settings.collection, ner_languages=ner_languages)


def _spacy_models(spec: str) -> dict[str, str]:
    """"en:en_core_web_sm,zh:zh_core_web_sm" as {"en": "en_core_web_sm", "zh": "zh_core_web_sm"};
    "none" for no models."""
    models: dict[str, str] = {}
    if spec.strip().lower() == "none":
        return models
    for item in filter(None, (part.strip() for part in spec.split(","))):
        language, sep, model = item.partition(":")
        if not sep or not model.strip():
            raise ValueError(f"PGKB_PII_SPACY_MODELS entries are LANGUAGE:MODEL, got {item!r}")
        models[language.strip()] = model.strip()
    return models
