"""Passwords and keys in settings stay out of reprs, messages and logs (issue 28, low items)."""

import pytest
from sqlalchemy.engine import make_url

from pgkb.settings import Settings
from store import Store, StoreError, resolve_url


def test_the_repr_of_settings_hides_the_database_password_and_the_hash_key():
    settings = Settings(database_url="postgresql://kb:pa55word@db.internal/kb", pii_hash_key="hash-key-123")
    assert "pa55word" not in repr(settings) and "hash-key-123" not in repr(settings)
    assert "collection='default'" in repr(settings)  # the rest is still shown
    from ingest.pii import MaskPolicy

    policy = MaskPolicy.parse(operators="hash", hash_key="hash-key-123")
    assert policy.hash_key == "hash-key-123" and "hash-key-123" not in repr(policy)


@pytest.mark.parametrize("password", ["swordfish@tuna", "alpha:bravo/charlie@delta", "already%40quoted"])
def test_a_password_with_url_characters_is_read_whole_and_never_echoed(password):
    url = f"postgresql://kb:{password}@127.0.0.1:9/kb"
    parsed = make_url(resolve_url(Settings(database_url=url)))
    assert (parsed.username, parsed.host, parsed.port, parsed.database) == ("kb", "127.0.0.1", 9, "kb")
    assert parsed.password == password.replace("%40", "@")
    with pytest.raises(StoreError) as refused:
        Store.open(Settings(database_url=url))
    assert "127.0.0.1" in str(refused.value)
    for part in password.replace("%40", "@").replace("/", "@").replace(":", "@").split("@"):
        assert part not in str(refused.value).replace("127.0.0.1", "")
