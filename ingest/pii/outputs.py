"""Masking what an ingest run writes besides documents' texts: their keys and paths, the
user's tags and folder metadata, and error texts (a parser's message can quote the cell it
choked on), in the database, the report, the output and the logs.

A key is the file's path relative to the ingested folder with personal data masked in it, so
the same file keeps the same key from run to run and reruns skip it as unchanged; setting
PGKB_PII_KEYS=keep stores real paths instead. Two files whose names differ only in their
personal data ("合同_13912340006.pdf", "合同_13912340007.pdf") mask alike under the replace
operator: all but the first (in path order) fail with a reason saying how to tell them apart.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.fulltext import unstorable

from ..sources import key_of
from .masker import Masker, MaskingError


class KeyCollision(MaskingError):
    """Two files' paths mask to the same key; the message names the key, never the paths."""


class OutputMasker:
    """Masks a run's keys, paths, tags and error texts with the documents' masker, which
    `masker` gives (loading it the first time: seconds); with masking off (`masker` None)
    everything passes as it is. `lock` is the run's lock on the masker, whose Presidio engines
    are not documented as safe to share between threads."""

    def __init__(self, masker: Callable[[], Masker | None] | None, mask_keys: bool, lock: threading.Lock):
        self.masker, self.lock = masker, lock
        self.mask_keys = masker is not None and mask_keys
        self._keys: dict[Path, str] = {}
        self._paths: dict[Path, str] = {}
        self._collisions: dict[Path, str] = {}
        self._values: dict[str, str] = {}  # tag values repeat from file to file

    def folders(self, folders: list[Path]) -> list[str]:
        """Each folder's path as it may be stored (a collection's roots, a run's folder), masked
        alone: a folder is stored alike whichever run names it."""
        if not self.mask_keys:
            return [str(folder) for folder in folders]
        return [self._masked([str(folder)])[0] for folder in folders]

    def name(self, root: Path, paths: list[Path]) -> None:
        """Work out the key and path of every file under the folder `root` (the keys in one
        masker call)."""
        keys = {path: key_of(path, root) for path in paths}
        keys = {path: key for path, key in keys.items() if not unstorable(key)}  # the others fail alone, unnamed
        if not self.mask_keys:
            self._keys, self._paths = keys, {path: str(path) for path in paths}
            return
        (masked_root,) = self.folders([root])
        masked = self._masked(list(keys.values()))
        self._keys = dict(zip(keys, masked))
        self._paths = {path: f"{masked_root}/{key}" for path, key in self._keys.items()}
        by_key = defaultdict(list)
        for path, key in self._keys.items():
            by_key[key].append(path)
        for key, same in by_key.items():
            for path in sorted(same)[1:]:
                self._collisions[path] = (
                    f"its name masks to the key of another file ({key}): mask with the keyed hash operator "
                    "(--pii-operator hash and PGKB_PII_HASH_KEY) to tell them apart, or keep real names "
                    "(--pii-keys keep)")

    def key(self, path: Path) -> str:
        return self._keys[path]

    def attachment(self, name: str) -> str:
        """The name of a file another holds (an e-mail's attachment) as it ends the file's key
        and path: masked like a file's name."""
        return self._masked([name])[0] if self.mask_keys else name

    def check_unique(self, path: Path) -> None:
        """KeyCollision when the file's key is another file's too."""
        if path in self._collisions:
            raise KeyCollision(self._collisions[path])

    def path(self, path: Path) -> str:
        return self._paths[path]

    def text(self, text: str) -> str:
        """An error text or a log line, masked like a document's text."""
        if self.masker is None or not text:
            return text
        try:
            return self._masked([text])[0]
        except MaskingError:
            return "(message withheld: masking it failed)"

    def values(self, value: Any) -> Any:
        """Tags and metadata (strings, numbers, lists, mappings) with every string value masked;
        the names of fields are left as they are."""
        if self.masker is None:
            return value
        new = sorted({text for text in _strings(value) if text not in self._values})
        self._values.update(zip(new, self._masked(new)))
        return _replaced(value, self._values)

    def _masked(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        if self.masker is None:  # its callers never get here with masking off: never pass a text unmasked
            raise MaskingError("personal data masking is off")
        try:
            masker = self.masker()
            if masker is not None:
                with self.lock:
                    return masker.mask_texts(texts)[0]
        except Exception as exc:  # its message could quote the text
            raise MaskingError(f"personal data masking failed ({type(exc).__name__})") from None
        raise MaskingError("personal data masking is off")


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _replaced(value: Any, masked: dict[str, str]) -> Any:
    if isinstance(value, str):
        return masked[value]
    if isinstance(value, dict):
        return {name: _replaced(item, masked) for name, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item, masked) for item in value]
    return value
