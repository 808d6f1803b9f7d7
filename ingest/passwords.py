"""A keyed hash of the passwords a run tries on encrypted PDFs, so that the next run can tell
whether they changed (and try the files that failed as encrypted again) without storing them.

The database keeps the hash in an encrypted file's fingerprint. A plain hash there would let
anyone who reads the database (or a dump of it) test guessed passwords offline, so the hash
is an HMAC whose key is random, made once in the data folder, readable by its owner only,
and never written to the database. The key is per data folder: a run from another machine
(sharing a DATABASE_URL) gets another hash, and so tries those files once more, which costs
a parse and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path

from pgkb.errors import ConfigurationError

KEY_FILE = "passwords.key"  # in the data folder
KEY_BYTES = 32


def password_set_digest(passwords: tuple[str, ...], data_dir: Path) -> str | None:
    """The HMAC-SHA256 of the set of passwords (order and repeats do not matter); None when
    there are none, so a run without passwords needs no key."""
    if not passwords:
        return None
    message = json.dumps(sorted(set(passwords))).encode()
    return hmac.new(_key(Path(data_dir).expanduser()), message, hashlib.sha256).hexdigest()


def _key(data_dir: Path) -> bytes:
    """The data folder's key, made on first use. Written to a file of its own and then linked
    into place, so that runs starting together agree on one key and none reads a half-written one."""
    path = data_dir / KEY_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor, draft = tempfile.mkstemp(dir=data_dir, prefix=".passwords-key-")  # mode 0600
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(os.urandom(KEY_BYTES))
                os.link(draft, path)
            except FileExistsError:
                pass  # another run made it first: use theirs
            finally:
                os.unlink(draft)
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot keep the key that hashes the passwords in the data folder {data_dir} "
                                 f"({exc.strerror or exc}); choose another with --data-dir or PGKB_DATA_DIR") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{path} is not a key pgkb made ({len(key)} bytes, not {KEY_BYTES}); "
                                 "remove it and a new one is made (encrypted files that failed are tried again)")
    return key
