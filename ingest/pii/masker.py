"""Masking a parsed document: the policy (what, how sure, replaced by what) and the masker.

A document's texts (element texts, table HTML, file-level metadata values) are analysed
together: they are joined into a few large segments per language, so Presidio's per-call
overhead is paid per segment rather than per paragraph, and then each match is mapped back
to the text it came from. Overlapping matches merge into one masked span, so everything a
recognizer found is masked even where two recognizers disagree on where it ends.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast, get_args

from pgkb.errors import ConfigurationError, MaskingError
from pgkb.settings import default

from ..parsers import ParsedDocument

if TYPE_CHECKING:  # Presidio and spaCy take seconds to import: only a run that masks loads them
    from presidio_analyzer import AnalyzerEngine

log = logging.getLogger(__name__)

# Entity types found by patterns and checksums, whatever NLP model is installed.
PATTERN_ENTITIES = (
    "CN_ID_CARD", "CN_MOBILE", "CN_LANDLINE", "CN_BANK_CARD", "CN_SOCIAL_CREDIT_CODE", "CN_PASSPORT",
    "CN_NAME", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "URL",
)
# Entity types only a named-entity model finds.
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION")
ENTITY_TYPES = PATTERN_ENTITIES + NER_ENTITIES
# What a masked value becomes: a typed placeholder, nothing, or a keyed hash.
Operator = Literal["replace", "redact", "hash"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
# A type whose recognizer takes any number of the right shape: for the same digits, a
# Chinese recognizer's type (CN_MOBILE, CN_LANDLINE) is the better label.
GENERIC_TYPES = {"PHONE_NUMBER"}
# File metadata fields that hold a person's name by definition: masked whole as PERSON.
PERSON_FIELDS = ("author", "last_modified_by", "from", "to", "cc")

# Texts are joined into segments of about this many characters for one analyzer call.
SEGMENT_CHARS = 50_000
_SEPARATOR = "\n\n"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
# Full-width forms (１３８, ＠, －) read as their ASCII twins; one character for one, so the
# offsets of the analysed text are those of the original.
_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}


@dataclass(frozen=True)
class MaskPolicy:
    """Which entity types are masked, from which score, and with which operator:
    "replace" (a typed placeholder such as <CN_ID_CARD>), "redact" (removed) or "hash"
    (<TYPE:hmac> with `hash_key`: equal values give equal tokens within a collection)."""

    entities: tuple[str, ...]
    threshold: float
    default_operator: Operator
    operators: Mapping[str, Operator]
    hash_key: str | None = field(repr=False)  # a secret

    @classmethod
    def parse(cls, entities: str = default("pii_entities"), threshold: float = default("pii_threshold"),
              operators: str = default("pii_operators"), hash_key: str | None = None) -> MaskPolicy:
        """A policy from its settings' text forms (PGKB_PII_*); ConfigurationError says what is wrong.

        `entities`: "all", or a comma list of types, where "-TYPE" removes one ("all,-URL").
        `operators`: a comma list of OPERATOR (the default, else replace) and TYPE=OPERATOR entries.
        """
        chosen: list[str] = []
        for item in _items(entities):
            if item.lower() == "all":
                chosen.extend(ENTITY_TYPES)
            elif item.startswith("-"):
                chosen = [e for e in chosen if e != _entity(item[1:])]
            else:
                chosen.append(_entity(item))
        if not 0 <= threshold <= 1:
            raise ConfigurationError(f"the PII score threshold must be between 0 and 1, got {threshold}")
        chosen_default: Operator = "replace"
        per_type: dict[str, Operator] = {}
        for item in _items(operators):
            name, _, operator = item.rpartition("=")
            if name:
                per_type[_entity(name)] = _operator(operator)
            else:
                chosen_default = _operator(operator)
        if "hash" in (chosen_default, *per_type.values()) and not hash_key:
            raise ConfigurationError("the hash operator needs a secret key: set PGKB_PII_HASH_KEY")
        return cls(tuple(dict.fromkeys(chosen)), threshold, chosen_default, per_type, hash_key)

    def operator(self, entity: str) -> Operator:
        return self.operators.get(entity, self.default_operator)

    def describe(self) -> dict:
        """The policy as recorded with a run: everything but the key."""
        return {"entities": list(self.entities), "threshold": self.threshold,
                "operator": self.default_operator, "operators": dict(self.operators)}


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _operator(name: str) -> Operator:
    if name not in OPERATORS:
        raise ConfigurationError(f"unknown PII operator {name!r}: use one of {', '.join(OPERATORS)}")
    return cast(Operator, name)


def _entity(name: str) -> str:
    entity = name.strip().upper()
    if entity not in ENTITY_TYPES:
        raise ConfigurationError(f"unknown PII entity type {name!r}; known types: {', '.join(ENTITY_TYPES)}")
    return entity


@dataclass(frozen=True)
class Found:
    """A masked span of a text: its offsets, entity type and score."""

    start: int
    end: int
    entity: str
    score: float


@dataclass
class _Segment:
    """Texts joined by a blank line for one analyzer call, and where each one starts."""

    language: str
    parts: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    size: int = 0
    text: str = ""

    def add(self, index: int, text: str) -> None:
        self.parts.append(text)
        self.indices.append(index)
        self.starts.append(self.size)
        self.size += len(text) + len(_SEPARATOR)

    def close(self) -> _Segment:
        self.text = _SEPARATOR.join(self.parts)
        return self

    def locate(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(text index, start, end) of the texts a match in the segment covers, clipped to
        each: one text, unless the match crosses a separator."""
        k = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while k < len(self.starts) and self.starts[k] < end:
            clipped_start = max(start - self.starts[k], 0)
            clipped_end = min(end - self.starts[k], len(self.parts[k]))
            if clipped_start < clipped_end:
                yield self.indices[k], clipped_start, clipped_end
            k += 1


class Masker:
    """Masks personal data in texts and parsed documents according to a MaskPolicy.

    `scope` (the collection's name) goes into the keyed hash, so a value's token in one
    collection says nothing about its token in another.
    """

    def __init__(self, analyzer: AnalyzerEngine, policy: MaskPolicy, scope: str, ner_languages: Sequence[str] = (),
                 missing_models: Sequence[str] = ()):
        self.analyzer = analyzer
        self.policy = policy
        self.scope = scope
        self.ner_languages = tuple(ner_languages)
        # The spaCy models asked for but not installed, "en_core_web_sm (en)": what goes unfound.
        self.missing_models = tuple(missing_models)
        from presidio_analyzer import BatchAnalyzerEngine

        self._batch = BatchAnalyzerEngine(analyzer)
        # Presidio warns on every call about entity types no recognizer of the language finds.
        self._entities = {
            language: [e for e in policy.entities if e in analyzer.get_supported_entities(language)]
            for language in analyzer.supported_languages
        }

    def unfound(self) -> str | None:
        """What the policy asks to mask that this masker cannot find, and why; None if nothing."""
        kinds = [entity for entity in NER_ENTITIES if entity in self.policy.entities]
        if not kinds or not self.missing_models:
            return None
        return (f"{', '.join(kinds)} in text, which only a spaCy model finds: {', '.join(self.missing_models)} "
                "not installed (see the README's Personal data masking)")

    def mask_document(self, document: ParsedDocument) -> dict[str, int]:
        """Mask the document's element texts, table HTML and metadata values in place;
        returns how many values of each entity type were masked."""
        slots: list[tuple[object, str]] = []  # (owner, attribute or key) of each text
        for element in document.elements:
            slots.append((element, "text"))
            if isinstance(getattr(element.metadata, "text_as_html", None), str):
                slots.append((element.metadata, "text_as_html"))
        found: Counter = Counter()
        for key, value in document.metadata.items():
            if not isinstance(value, str) or not value:
                continue
            if key in PERSON_FIELDS and "PERSON" in self.policy.entities:
                document.metadata[key] = self._replacement(value, "PERSON")
                found["PERSON"] += 1
            else:
                slots.append((document.metadata, key))
        texts = [_read(owner, name) for owner, name in slots]
        try:
            masked, counts = self.mask_texts(texts)
        except Exception as exc:  # its message could quote the text it choked on
            raise MaskingError(f"personal data masking failed ({type(exc).__name__})") from None
        for (owner, name), text in zip(slots, masked):
            _write(owner, name, text)
        found.update(counts)
        log.debug("masked %d values in %d texts: %s", sum(found.values()), len(texts), dict(found))
        return dict(found)

    def mask_texts(self, texts: Sequence[str]) -> tuple[list[str], Counter]:
        """The texts with personal data masked, and the count of masked values by type."""
        counts: Counter = Counter()
        masked = []
        for text, spans in zip(texts, self.find(texts)):
            parts, position = [], 0
            for span in spans:
                parts += [text[position:span.start], self._replacement(text[span.start:span.end], span.entity)]
                position = span.end
                counts[span.entity] += 1
            masked.append("".join(parts) + text[position:] if parts else text)
        return masked, counts

    def find(self, texts: Sequence[str]) -> list[list[Found]]:
        """What would be masked in each text: matches above the threshold, overlapping ones
        merged, in order."""
        spans: list[list[Found]] = [[] for _ in texts]
        segments = list(self._segments(texts))
        for language in {segment.language for segment in segments}:
            batch = [segment for segment in segments if segment.language == language]
            found = self._batch.analyze_iterator(
                [segment.text for segment in batch], language,
                entities=self._entities[language], score_threshold=self.policy.threshold,
            )
            for segment, results in zip(batch, found):
                for result in results:
                    for index, start, end in segment.locate(result.start, result.end):
                        spans[index].append(Found(start, end, result.entity_type, result.score))
        return [_merge(text_spans) for text_spans in spans]

    def _segments(self, texts: Sequence[str]) -> Iterator[_Segment]:
        """Consecutive texts of one language, joined up to SEGMENT_CHARS."""
        segment = None
        for index, text in enumerate(texts):
            if not text.strip():
                continue
            language = _language(text)
            if segment is None or segment.language != language or segment.size + len(text) > SEGMENT_CHARS:
                if segment:
                    yield segment.close()
                segment = _Segment(language)
            segment.add(index, text.translate(_HALF_WIDTH))
        if segment:
            yield segment.close()

    def _replacement(self, value: str, entity: str) -> str:
        operator = self.policy.operator(entity)
        if operator == "redact":
            return ""
        if operator == "hash":
            normal = re.sub(r"[\s\-().]", "", unicodedata.normalize("NFKC", value)).casefold()
            key = self.policy.hash_key
            assert key is not None  # MaskPolicy.parse refuses the hash operator without one
            digest = hmac.new(key.encode(), f"{self.scope}\x1f{normal}".encode(), hashlib.sha256)
            return f"<{entity}:{digest.hexdigest()[:12]}>"
        return f"<{entity}>"


def _language(text: str) -> str:
    """"zh" for text that is mostly Chinese, counting a Chinese character against the
    four or so letters of an English word."""
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk * 4 >= len(_LATIN.findall(text)) else "en"


def _merge(spans: list[Found]) -> list[Found]:
    """Overlapping spans as one, labelled by its longest member, then by the more specific
    type (CN_MOBILE over PHONE_NUMBER for the same digits), then by score."""
    merged: list[Found] = []
    cluster: list[Found] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if cluster and span.start < max(s.end for s in cluster):
            cluster.append(span)
            continue
        if cluster:
            merged.append(_labelled(cluster))
        cluster = [span]
    if cluster:
        merged.append(_labelled(cluster))
    return merged


def _labelled(cluster: list[Found]) -> Found:
    best = max(cluster, key=lambda s: (s.end - s.start, s.entity not in GENERIC_TYPES, s.score))
    return Found(cluster[0].start, max(s.end for s in cluster), best.entity, best.score)


def _read(owner, name) -> str:
    return owner[name] if isinstance(owner, dict) else getattr(owner, name)


def _write(owner, name, value: str) -> None:
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)
