"""Personal data masking, before anything is embedded, indexed or stored.

Runs on a parsed document's element texts, table HTML and file metadata, before chunking,
so chunk texts, section paths, titles and metadata only ever hold masked text. Built on
Presidio's analyzer with recognizers for Chinese and English data (recognizers.py, with the
checksums in checksums.py), set up to run offline (engine.py); the policy and the masking
itself are in masker.py; keys, paths, tags and error texts are masked in outputs.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgkb.errors import ConfigurationError

from .masker import ENTITY_TYPES, OPERATORS, Found, Masker, MaskingError, MaskPolicy, Operator
from .outputs import KeyCollision, OutputMasker

__all__ = ["ENTITY_TYPES", "OPERATORS", "Found", "KeyCollision", "Masker", "MaskerOptions", "MaskingError",
           "MaskPolicy", "Operator", "OutputMasker", "load_masker"]


@dataclass(frozen=True)
class MaskerOptions:
    """What a masker is made of (ingest.options builds it from Settings)."""

    policy: MaskPolicy
    # spaCy NER models by language, "en:en_core_web_sm,zh:zh_core_web_sm"; "none": none.
    spacy_models: str
    # Where keyed hashes are made (the collection): equal values hash alike only within it.
    scope: str


def load_masker(options: MaskerOptions) -> Masker:
    """A masker with the NER models of `options` that are installed (seconds to load)."""
    from .engine import build_analyzer  # Presidio and spaCy: seconds to import, so only here

    models = _spacy_models(options.spacy_models)
    analyzer, ner_languages = build_analyzer(models)
    missing = tuple(f"{name} ({language})" for language, name in models.items() if language not in ner_languages)
    return Masker(analyzer, options.policy, scope=options.scope, ner_languages=ner_languages,
                  missing_models=missing)


def _spacy_models(spec: str) -> dict[str, str]:
    """"en:en_core_web_sm,zh:zh_core_web_sm" as {"en": "en_core_web_sm", "zh": "zh_core_web_sm"};
    "none" for no models."""
    models: dict[str, str] = {}
    if spec.strip().lower() == "none":
        return models
    for item in filter(None, (part.strip() for part in spec.split(","))):
        language, sep, model = item.partition(":")
        if not sep or not model.strip():
            raise ConfigurationError(f"PGKB_PII_SPACY_MODELS entries are LANGUAGE:MODEL, got {item!r}")
        models[language.strip()] = model.strip()
    return models
