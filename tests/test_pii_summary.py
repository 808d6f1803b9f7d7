"""What masking tells the user through the `ingest` command: names it cannot find without a
spaCy model, in the summary; web addresses kept by default and masked when asked."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from store import resolve_url
from tests.conftest import run_cli

PAGE = "https://wiki.example.org/travel/claims"
TEXT = f"# Claims\n\nJane Smith approves travel claims; the form is at {PAGE}, questions to jane.smith@example.com.\n"


def chunk_texts(settings, collection: str) -> str:
    engine = create_engine(resolve_url(settings))
    with engine.connect() as conn:
        texts = conn.execute(text(
            "SELECT c.text FROM chunks c JOIN collections k ON k.id = c.collection_id WHERE k.name = :name"),
            {"name": collection}).scalars().all()
    engine.dispose()
    return "\n".join(texts)


def test_the_summary_says_names_go_unmasked_and_urls_are_kept_unless_asked(tmp_path, settings):
    folder = tmp_path / "claims"
    folder.mkdir()
    (folder / "claims.md").write_text(TEXT)
    common = [str(folder), "--data-dir", str(settings.data_dir), "-q"]
    env = {"PGKB_PII_SPACY_MODELS": "en:en_core_web_sm"}  # not installed here

    kept = run_cli("ingest", *common, "-c", settings.collection, env=env)
    assert kept.returncode == 0, kept.stderr
    summary = " ".join(kept.stdout.split())
    assert ("not masked PERSON, LOCATION, ORGANIZATION in text, which only a spaCy model finds: "
            "en_core_web_sm (en) not installed") in summary
    stored = chunk_texts(settings, settings.collection)
    assert PAGE in stored and "<EMAIL_ADDRESS>" in stored and "jane.smith@" not in stored

    masked = run_cli("ingest", *common, "-c", settings.collection + "-urls", "--pii-urls", "mask", env=env)
    assert masked.returncode == 0, masked.stderr
    stored = chunk_texts(settings, settings.collection + "-urls")
    assert PAGE not in stored and "<URL>" in stored
