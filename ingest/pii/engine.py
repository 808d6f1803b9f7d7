"""Presidio's analyzer, set up to run offline on Chinese and English text.

- The NLP engine loads each language's configured spaCy model when it is installed and
  otherwise does no NLP for that language, downloading nothing: the pattern and checksum
  recognizers run either way; names, places and organisations need the model.
- Context words count when they appear within a few characters of a match, in any
  language: Presidio's default compares spaCy lemmas, which need a model, and which
  Chinese text, unsegmented, would not match anyway.
- Presidio logs warnings and errors only, and without their arguments, which can be the
  words around a match or the match itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import regex
import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab

from .recognizers import ner_recognizer, pattern_recognizers

log = logging.getLogger(__name__)

LANGUAGES = ("en", "zh")
# Pipeline components Presidio never reads; skipping them makes NER models faster.
_UNUSED_COMPONENTS = ["parser", "lemmatizer", "senter", "textcat", "textcat_multilabel"]


class OfflineNlpEngine(SpacyNlpEngine):
    """spaCy for Presidio that never downloads: `models` maps a language to a spaCy model
    name or path. A language whose model is not installed gets no NLP at all, only empty
    artifacts: pattern recognizers need none, and tokenizing would cost as much as matching."""

    def __init__(self, models: dict[str, str]):
        super().__init__(models=[{"lang_code": lang, "model_name": name or "none"} for lang, name in models.items()])
        self.wanted = models
        self.ner_languages: list[str] = []
        self._vocab = Vocab()

    def load(self) -> None:
        self.pipelines: dict[str, Language | None] = {}
        absent = []
        for language, name in self.wanted.items():
            model = _installed(name)
            self.pipelines[language] = spacy.load(model, exclude=_UNUSED_COMPONENTS) if model else None
            if model:
                self.ner_languages.append(language)
            elif name:
                absent.append(f"{name} ({language})")
        self.nlp = self.pipelines  # type: ignore[assignment]  # presidio types it None until loaded
        if absent:
            log.info("spaCy %s not installed: personal names, places and organisations are not detected; "
                     "pattern and checksum recognizers still run (install a model, or change PGKB_PII_SPACY_MODELS)",
                     f"model {absent[0]} is" if len(absent) == 1 else f"models {' and '.join(absent)} are")

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        if self.pipelines[language] is None:
            return self._no_artifacts(language)
        return super().process_text(text, language)

    # SpacyNlpEngine's signature, which its own base (NlpEngine) declares otherwise.
    def process_batch(  # type: ignore[override]
            self, texts, language: str, batch_size: int = 1, n_process: int = 1, as_tuples: bool = False):
        if self.pipelines[language] is not None:
            yield from super().process_batch(texts, language, batch_size, n_process, as_tuples)
        elif as_tuples:
            for text, context in texts:
                yield text, self._no_artifacts(language), context
        else:
            for text in texts:
                yield text, self._no_artifacts(language)

    def _no_artifacts(self, language: str) -> NlpArtifacts:
        return NlpArtifacts(entities=[], tokens=Doc(self._vocab, words=[]), tokens_indices=[], lemmas=[],
                            nlp_engine=self, language=language, scores=[])


def _installed(name: str) -> str | Path | None:
    """What spacy.load takes for `name` (an installed package, or a model folder), else None."""
    if not name:
        return None
    if spacy.util.is_package(name):
        return name
    path = Path(name).expanduser()
    return path if path.is_dir() else None


class WindowContextEnhancer(ContextAwareEnhancer):
    """Raises a match's score when one of its recognizer's context words is within
    `before` characters before it or `after` characters after it (where the recognizer's
    FOLLOWING_CONTEXT words count too).

    English words match whole ("tel" in "Tel:", not in "hotel"), plurals included;
    Chinese words match anywhere. A match right after "version" or "版本" is dropped:
    "version 10.2.0.1" is not an IP address.
    """

    _VERSION_BEFORE = regex.compile(r"(?:\bversions?|\bver\.?|\brelease|\bbuild|版本号?)\s*[:：]?\s*$", regex.I)

    def __init__(self, before: int = 40, after: int = 24):
        super().__init__(context_similarity_factor=0.35, min_score_with_context_similarity=0.4,
                         context_prefix_count=0, context_suffix_count=0)
        self.before, self.after = before, after
        self._patterns: dict[str, tuple[regex.Pattern | None, regex.Pattern | None]] = {}

    def enhance_using_context(
        self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer], context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        by_id = {recognizer.id: recognizer for recognizer in recognizers}
        kept = []
        for result in raw_results:
            before = text[max(0, result.start - self.before):result.start]
            if self._VERSION_BEFORE.search(before):
                continue
            recognizer_id = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY)
            preceding, following = self._context_patterns(by_id.get(recognizer_id))
            if (preceding and preceding.search(before)
                    or following and following.search(text, result.end, result.end + self.after)):
                result.score = min(max(result.score + self.context_similarity_factor,
                                       self.min_score_with_context_similarity), self.MAX_SCORE)
            kept.append(result)
        return kept

    def _context_patterns(self, recognizer: EntityRecognizer | None) -> tuple[regex.Pattern | None, ...]:
        """The recognizer's context words as regexes for the text before a match and after it."""
        if recognizer is None:
            return None, None
        if recognizer.id not in self._patterns:
            words = list(recognizer.context or [])
            self._patterns[recognizer.id] = (
                _words_pattern(words), _words_pattern(words + getattr(recognizer, "FOLLOWING_CONTEXT", [])))
        return self._patterns[recognizer.id]


def _words_pattern(words: list[str]) -> regex.Pattern | None:
    alternatives = []
    for word in sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True):
        escaped = regex.escape(word)
        alternatives.append(rf"(?<![a-z]){escaped}(?:e?s)?(?![a-z])" if word.isascii() else escaped)
    return regex.compile("|".join(alternatives), regex.I) if alternatives else None


class _ArgumentsWithheld(logging.Filter):
    """Presidio logs some messages with the text they concern (the words around a match, a
    value that failed validation): the message stays, its arguments are withheld."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = ("<withheld>",) * len(record.args)
        elif record.args:
            record.msg, record.args = f"{record.msg} (arguments withheld)", None
        return True


def build_analyzer(models: dict[str, str]) -> tuple[AnalyzerEngine, list[str]]:
    """Presidio's analyzer for LANGUAGES with every recognizer; also the languages for which
    a spaCy model (and so named-entity recognition) was loaded."""
    # Presidio's debug messages list the words around each match, and its info messages
    # come once per analysed text: neither is for a pgkb user's log.
    presidio_log = logging.getLogger("presidio-analyzer")
    presidio_log.setLevel(logging.WARNING)
    if not any(isinstance(f, _ArgumentsWithheld) for f in presidio_log.filters):
        presidio_log.addFilter(_ArgumentsWithheld())
    nlp_engine = OfflineNlpEngine({language: models.get(language, "") for language in LANGUAGES})
    nlp_engine.load()
    registry = RecognizerRegistry(supported_languages=list(LANGUAGES))
    for language in LANGUAGES:
        recognizers: Sequence[EntityRecognizer] = pattern_recognizers(language)
        if language in nlp_engine.ner_languages:
            recognizers = [*recognizers, ner_recognizer(language)]
        for recognizer in recognizers:
            registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=list(LANGUAGES),
                              context_aware_enhancer=WindowContextEnhancer())
    return analyzer, list(nlp_engine.ner_languages)
