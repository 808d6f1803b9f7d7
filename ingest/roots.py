"""A collection's roots: the folders its documents were ingested from.

A document's key is its file's path relative to its root, so the same file keeps its key
whether its root or a folder inside it is ingested (`office/a.pdf` either way), and a run
touches, prunes included, only the documents under the folder it was given. A folder that
is not under one of the collection's roots is refused, unless the user adds it as a root
(`--add-root`): otherwise two folders would share a collection without a word, and pruning
one would delete the other's documents. A collection whose one root is gone from the disk
follows its folder to wherever it is ingested from next (a moved folder, a new checkout):
its documents keep their keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgkb.errors import ConfigurationError
from store import Collection


class RootRefused(ConfigurationError):
    """The folder is not one of the collection's roots, nor inside one; nothing was done."""


@dataclass(frozen=True)
class Placement:
    """Where a run's folder sits in its collection."""

    root: Path          # the collection's root its documents' keys are relative to
    stored_root: str    # that root as stored
    stored_folder: str  # the run's folder (the root, or a folder inside it) as stored
    new: bool           # whether the run adds the root to the collection
    moved_from: str | None = None  # the collection's root, gone from the disk, that this one replaces

    def holds(self, document_path: str) -> bool:
        """Whether a document stored with this path lies under the run's folder: this run's to prune."""
        return document_path.startswith(self.stored_folder + "/")

    def owns(self, document_path: str) -> bool:
        """Whether a document stored with this path came from the run's root."""
        return document_path.startswith(self.stored_root + "/")


def place(path: Path, collection: Collection, stored: Callable[[list[Path]], list[str]],
          add_root: bool) -> Placement:
    """The root of a run over `path` (a folder, or a file: its folder) in `collection`:
    the collection's root that holds it, else the folder itself as a new root, which only a
    new collection (or `add_root`) takes. `stored` gives folders' paths as stored."""
    folder = path if path.is_dir() else path.parent
    candidates = [folder, *folder.parents]
    names = stored(candidates)
    for candidate, name in zip(candidates, names):
        if name in collection.roots:
            return Placement(candidate, name, names[0], new=False)
    inner = [root for root in collection.roots if root.startswith(names[0] + "/")]
    if inner:
        raise RootRefused(
            f"{folder} holds {inner[0]}, a root of collection {collection.name!r}: its documents would be stored "
            f"again under other keys; ingest {inner[0]} itself, or this folder into a collection of its own "
            "(-c NAME); nothing was done")
    if len(collection.roots) == 1 and _gone(collection.roots[0]) and not add_root:
        return Placement(folder, names[0], names[0], new=False, moved_from=collection.roots[0])
    if collection.roots and not add_root:
        roots = ", ".join(collection.roots)
        raise RootRefused(
            f"collection {collection.name!r} holds the documents of {roots}, and {folder} is another folder: "
            "ingest it into a collection of its own (-c NAME), or pass --add-root to keep both folders' "
            "documents in this one; nothing was done")
    return Placement(folder, names[0], names[0], new=True)


def _gone(stored_root: str) -> bool:
    """A root stored as a real path (not masked) that no longer exists."""
    path = Path(stored_root)
    return path.is_absolute() and "<" not in stored_root and not path.exists()
