"""Title-aware chunking on elements, with the real tokenizer of the default model."""

# ingest first: importing it opts out of unstructured's telemetry, which unstructured's import sends.
from ingest.chunking import chunk_elements  # noqa: I001
from unstructured.documents.elements import ElementMetadata, NarrativeText, Table, Title


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


def test_small_sibling_sections_share_a_chunk_but_top_level_sections_never_do(embedder):
    elements = [
        title("Contract", 0),
        title("1. Definitions", 1), para("Terms used in this contract."),
        title("1.1 Buyer", 2), para("The company buying the goods."),
        title("1.2 Seller", 2), para("The company selling the goods."),
        title("1.3 Goods", 2, page=2), para("The machines listed in annex A.", page=2),
        title("2. Term", 1, page=2), para("Three years from signature.", page=2),
        title("3. Notices", 1, page=2), para("In writing, to the addresses above.", page=2),
    ]
    chunks = chunk_elements(elements, "c.pdf", embedder.count_tokens, 256)
    assert [c.section_path for c in chunks] == [
        ("Contract", "1. Definitions"),
        ("Contract", "1. Definitions"),  # 1.1 to 1.3 together, under their parent
        ("Contract", "2. Term"), ("Contract", "3. Notices"),
    ]
    merged = chunks[1]
    assert merged.text.startswith("1.1 Buyer\n\nThe company buying") and "1.3 Goods" in merged.text
    assert (merged.page_start, merged.page_end) == (1, 2)


def test_heading_depths_need_not_start_at_zero(embedder):
    # Word files without a Title paragraph: every Heading 1 is depth 1, and they are siblings.
    elements = [title("First", 1), para("One."), title("Inner", 2), para("Two."), title("Second", 1), para("Three.")]
    paths = [c.section_path for c in chunk_elements(elements, "w.docx", embedder.count_tokens, 256)]
    assert paths == [("First",), ("First", "Inner"), ("Second",)]


def test_no_chunk_exceeds_the_budget_even_with_headings_as_long_as_paragraphs(embedder):
    long_heading = "A heading that goes on " + "and on " * 60
    elements = [title(long_heading, 0), title(long_heading + "again", 1),
                para(" ".join(f"Sentence {i} of the body text." for i in range(200)))]
    chunks = chunk_elements(elements, "h.md", embedder.count_tokens, 128)
    assert chunks and all(c.token_count <= 128 for c in chunks)
    assert all(n == c.token_count for c, n in zip(chunks, embedder.count_tokens([c.embedding_text for c in chunks])))
    assert "Sentence 199 of the body text." in chunks[-1].text



def test_chunk_token_counts_are_the_tokenizers_own(embedder):
    # count_tokens sums remembered word counts (MiniLM's WordPiece); what a chunk records must
    # still be what the tokenizer makes of its whole text, words cut between characters included.
    rows = ["Item | Price"] + [f"Item{i} | {i}.50" for i in range(80)]
    elements = [
        title("Contract 合同", 0),
        para(" ".join(f"Clause {i}: the buyer pays, the seller delivers." for i in range(90))),
        title("违约责任", 1), para("乙方未按期交货的，应当支付违约金；逾期超过三十日的，甲方有权解除合同。" * 12),
        para(" ".join(["x" * 100] * 3)),  # words of 50 tokens, longer than a budget of 40: cut between characters
        Table("\n".join(rows), metadata=ElementMetadata(page_number=2)),
    ]
    for budget in (40, 100, 254):
        chunks = chunk_elements(elements, "s.pdf", embedder.count_tokens, budget)
        whole = [len(embedder.tokenizer(c.embedding_text, add_special_tokens=False)["input_ids"]) for c in chunks]
        assert [c.token_count for c in chunks] == whole and max(whole) <= budget


def test_the_section_path_is_embedded_unless_turned_off(embedder):
    elements = [title("Travel Policy", 0), title("Claims", 1),
                para(" ".join(f"Receipt rule {i} applies to every journey abroad." for i in range(40)))]
    with_path = chunk_elements(elements, "t.pdf", embedder.count_tokens, 100)
    alone = chunk_elements(elements, "t.pdf", embedder.count_tokens, 100, embed_headings=False)
    assert all(c.embedding_text.startswith("Travel Policy > Claims\n\n") for c in with_path[1:])
    assert all(c.embedding_text == c.text and c.section_path == ("Travel Policy", "Claims") for c in alone)
    # Each counted as the model reads it: the path's tokens no longer in the count.
    assert [c.token_count for c in alone] == embedder.count_tokens([c.text for c in alone])
    assert sum(c.token_count for c in alone) < sum(c.token_count for c in with_path)
    assert max(c.token_count for c in alone) <= 100
    assert {c.content_hash for c in alone}.isdisjoint(c.content_hash for c in with_path)


def test_no_chunk_is_only_a_heading(embedder):
    # A heading followed by a sibling's (a cover title, an empty section) or ending the document
    # made a chunk of its own, which ranked first for vague queries while saying nothing.
    elements = [title("Staff Guide", 1), title("Parking", 1), para("Visitors park by the main gate."),
                title("Bicycles", 1), para("Racks are behind building B."), title("Appendix", 1)]
    chunks = chunk_elements(elements, "g.md", embedder.count_tokens, 256)
    assert all(set(c.element_types) != {"Title"} for c in chunks)
    assert [c.text for c in chunks] == ["Staff Guide\n\nParking\n\nVisitors park by the main gate.",
                                        "Bicycles\n\nRacks are behind building B.\n\nAppendix"]
    assert [c.section_path for c in chunks] == [("Parking",), ("Bicycles",)]
    # A document of headings alone keeps them: they are all the text it has.
    only = chunk_elements([title("Cover", 0)], "c.md", embedder.count_tokens, 256)
    assert [c.text for c in only] == ["Cover"]
