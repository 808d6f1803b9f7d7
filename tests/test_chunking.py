"""Title-aware chunking on elements, with the real tokenizer of the default model."""

from ingest.chunking import chunk_elements  # first: ingest opts out of unstructured's telemetry
from unstructured.documents.elements import ElementMetadata, NarrativeText, Table, Title  # noqa: I001


def title(text, depth, page=1):
    return Title(text, metadata=ElementMetadata(category_depth=depth, page_number=page))


def para(text, page=1):
    return NarrativeText(text, metadata=ElementMetadata(page_number=page))


def test_headings_open_chunks_and_build_section_paths(embedder):
    elements = [
        title("Handbook", 0), title("Leave", 1), para("You have 25 days."),
        title("Sick leave", 2, page=2), para("Call before ten.", page=2),
        title("Equipment", 1, page=3), para("Laptops are issued on day one.", page=3),
    ]
    chunks = chunk_elements(elements, "h.docx", embedder.count_tokens, 256)
    assert [c.section_path for c in chunks] == [
        ("Handbook", "Leave"), ("Handbook", "Leave", "Sick leave"), ("Handbook", "Equipment"),
    ]
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 1), (2, 2), (3, 3)]
    assert chunks[0].text == "Handbook\n\nLeave\n\nYou have 25 days."
    assert [c.ordinal for c in chunks] == [0, 1, 2]
    assert all(c.document_key == "h.docx" and len(c.content_hash) == 64 for c in chunks)


def test_long_sections_split_under_the_budget_without_losing_text(embedder):
    sentences = [f"Sentence number {i} says something about travel expenses and receipts." for i in range(60)]
    elements = [title("Policy", 0), para(" ".join(sentences[:30]), page=1), para(" ".join(sentences[30:]), page=2)]
    chunks = chunk_elements(elements, "p.pdf", embedder.count_tokens, 100)
    assert len(chunks) > 3
    assert all(c.token_count <= 100 for c in chunks)  # section path included
    assert all(c.section_path == ("Policy",) for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 2


def test_a_long_table_splits_by_rows_and_repeats_its_header(embedder):
    rows = ["City | Rate"] + [f"City{i} | {i}" for i in range(200)]
    table = Table("\n".join(rows), metadata=ElementMetadata(page_number=1))
    chunks = chunk_elements([title("Rates", 0), table], "r.pdf", embedder.count_tokens, 120)
    assert len(chunks) > 2
    for chunk in chunks:
        body = chunk.text.removeprefix("Rates\n\n")
        assert body.startswith("City | Rate\n")
    rows_found = [row for c in chunks for row in c.text.split("\n") if row.startswith("City") and row != "City | Rate"]
    assert rows_found == rows[1:]
    assert all(c.token_count <= 120 for c in chunks)
