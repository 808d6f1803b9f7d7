"""Several processes on one data directory: the embedded server is shared, not fought over."""

import os
import subprocess
import sys

from sqlalchemy import create_engine, text

from pgkb.settings import Settings
from store import resolve_url
from tests.conftest import ROOT
from tests.term_statistics import assert_statistics_exact


def test_two_processes_ingesting_into_a_fresh_data_dir_at_once_both_succeed(docs, new_data_dir):
    # A data directory no server has started in yet: both processes race to create it.
    data_dir = new_data_dir
    env = {**os.environ, "PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": "together"}
    runs = [
        subprocess.Popen([sys.executable, "-m", "ingest", str(docs / name)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("policy.pdf", "handbook.docx")
    ]
    results = [(run.wait(timeout=300), run.stdout.read(), run.stderr.read()) for run in runs]
    for code, out, err in results:
        assert code == 0, err
        assert "1 ingested" in " ".join(out.split())

    engine = create_engine(resolve_url(Settings(data_dir=data_dir)))
    with engine.connect() as conn:
        documents = conn.execute(text("SELECT key FROM documents ORDER BY key")).scalars().all()
        duplicates = conn.execute(text(
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING count(*) > 1) d"
        )).scalar()
        collections = conn.execute(text("SELECT count(*) FROM collections")).scalar()
    assert documents == ["handbook.docx", "policy.pdf"]
    assert duplicates == 0 and collections == 1
    # Both runs counted their words into the one collection's BM25 statistics.
    assert_statistics_exact(engine, "together")
    engine.dispose()
