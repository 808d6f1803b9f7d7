"""Keeping a long run's heap from growing with the number of files it handles.

glibc keeps the heap a process has freed for its own later use; a process that handles
documents of every size one after another then grows towards the sum of its largest
moments instead of staying at the largest one (measured on ../shared/corpus: the run's main
process peaked at 1.5 GB without `release_freed_memory`, 1.1 GB with it).
"""

from __future__ import annotations

import ctypes

# mallopt's parameter for the size from which a block gets a mapping of its own.
_M_MMAP_THRESHOLD = -3
# glibc raises that size as mapped blocks are freed, up to 32 MiB, after which the model's
# batch-sized buffers come from the heap, between small blocks that live on (vectors waiting
# to be written...), and the heap cannot shrink. Fixed at 16 MiB, a run over 16 files copied
# 1, 4 and 8 times peaked at 866 / 930 / 956 MiB (process tree; 916 / 1,001 / 1,003 MiB with
# glibc's default) at the same speed. Lower costs speed: at 4 MiB the main process stayed
# flat, but the test corpus ingested 10% slower, every batch's buffers mapped afresh.
LARGE_BLOCK_BYTES = 16 << 20


def _load_glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to do
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_libc = _load_glibc()


def map_large_blocks_apart() -> None:
    """From now on, blocks of LARGE_BLOCK_BYTES or more go back to the system when freed."""
    if _libc is not None:
        _libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (a few milliseconds)."""
    if _libc is not None:
        _libc.malloc_trim(0)
