"""API keys: who may call the served API, on which collections, as which groups, to do what.

A key reads `pgkb_<id>_<secret>`. The id is its public name (listings, revocation); the
database keeps only the SHA-256 of the whole key, so a copy of the database grants nothing.
A presented key is found by its id and its hash compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from .errors import StoreError
from .tables import api_keys

Scope = Literal["read", "ingest", "admin"]
# Each scope allows what the ones before it allow: read searches and lists; ingest also uploads
# and deletes documents; admin also sees every document of its collections, whatever its readers.
SCOPES: tuple[Scope, ...] = get_args(Scope)
PREFIX = "pgkb_"
_KEY = re.compile(r"pgkb_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
# Names of groups and collections a key holds: printable, no commas (lists are written a,b).
_NAME = re.compile(r"[^\s,][^,\x00-\x1f\x7f]{0,199}")


class ApiKeyError(StoreError):
    """A key that cannot be made or found; the message names the field or the key id."""


@dataclass(frozen=True)
class ApiKey:
    """A key as stored (never its secret)."""

    id: str
    name: str
    scope: Scope
    collections: tuple[str, ...]
    groups: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    def allows(self, scope: Scope) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    @property
    def principals(self) -> tuple[str, ...] | None:
        """The groups a search runs as; None (no restriction) for an admin key."""
        return None if self.scope == "admin" else self.groups


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # the whole key, shown once: only its hash is stored


def create_key(conn: Connection, name: str, scope: str, collections: Sequence[str], groups: Sequence[str]) -> NewKey:
    if scope not in SCOPES:
        raise ApiKeyError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not collections:
        raise ApiKeyError("a key needs at least one collection (--collection)")
    for field, values in (("collection", collections), ("group", groups)):
        for value in values:
            if not _NAME.fullmatch(value):
                raise ApiKeyError(f"{field} names are 1 to 200 printable characters without commas, not {value!r}")
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = conn.execute(insert(api_keys).values(
        id=key_id, secret_hash=_hash(secret), name=name, scope=scope,
        collections=sorted(set(collections)), groups=sorted(set(groups)),
    ).returning(*_COLUMNS)).one()
    return NewKey(_key(row), secret)


def list_keys(conn: Connection) -> list[ApiKey]:
    return [_key(row) for row in conn.execute(select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id))]


def revoke_key(conn: Connection, key_id: str) -> ApiKey:
    row = conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                       .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
                       .returning(*_COLUMNS)).first()
    if row is None:
        raise ApiKeyError(f"no API key {key_id!r} (`pgkb keys list` shows them)")
    return _key(row)


def authenticate(conn: Connection, presented: str) -> ApiKey | None:
    """The live key `presented` is, or None: unknown, malformed or revoked alike."""
    match = _KEY.fullmatch(presented)
    row = conn.execute(select(*_COLUMNS, api_keys.c.secret_hash)
                       .where(api_keys.c.id == match.group(1))).first() if match else None
    # Compared even when there is nothing to compare with, so that timing tells nothing.
    stored = row.secret_hash if row is not None else _hash("")
    if not hmac.compare_digest(stored, _hash(presented)) or row is None or row.revoked_at is not None:
        return None
    return _key(row)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_COLUMNS = (api_keys.c.id, api_keys.c.name, api_keys.c.scope, api_keys.c.collections, api_keys.c.groups,
            api_keys.c.created_at, api_keys.c.revoked_at)


def _key(row) -> ApiKey:
    return ApiKey(row.id, row.name, row.scope, tuple(row.collections), tuple(row.groups), row.created_at,
                  row.revoked_at)
