"""Writers of real PDF, Word and Excel files, for the tests' fixtures and for examples/.

A document is a title and a list of sections: (level, heading, blocks), where a block is a
paragraph (str), a bullet list (list of str) or a table (tuple of rows, the first the header).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

Block = str | list | tuple
Section = tuple[int, str, Sequence[Block]]

_PDF_CSS = """
body { font-family: serif; font-size: 10pt; }
h1 { font-size: 18pt; } h2 { font-size: 14pt; } h3 { font-size: 12pt; }
table { border-collapse: collapse; width: 100%; } th, td { border: 1px solid black; padding: 2px 4px; }
"""


def write_pdf(path: Path, title: str, sections: Sequence[Section], *, footer: str | None = None,
              header: str | None = None, outline: bool = True, paper: str = "a5",
              page_break_before: Sequence[str] = (), columns: int = 1, password: str | None = None,
              watermark: str | None = None) -> Path:
    """A PDF with real text, headings in larger type, bordered tables, optional running header
    and footer (with page numbers), text in one or more columns, a diagonal watermark, and
    AES-256 encryption when given a password."""
    import pymupdf

    parts = [f"<h1>{html.escape(title)}</h1>"]
    for level, heading, blocks in sections:
        style = " style='page-break-before: always'" if heading in page_break_before else ""
        parts.append(f"<h{level + 1}{style}>{html.escape(heading)}</h{level + 1}>")
        parts.extend(_block_html(block) for block in blocks)
    page_rect = pymupdf.paper_rect(paper)
    body = page_rect + (36, 40, -36, -40)
    gutter = 18
    width = (body.width - gutter * (columns - 1)) / columns
    lefts = [body.x0 + i * (width + gutter) for i in range(columns)]
    column_rects = [pymupdf.Rect(left, body.y0, left + width, body.y1) for left in lefts]
    writer = pymupdf.DocumentWriter(str(path))
    story = pymupdf.Story(html="".join(parts), user_css=_PDF_CSS)
    more = True
    while more:
        device = writer.begin_page(page_rect)
        for rect in column_rects:
            if more:
                more, _ = story.place(rect)
                story.draw(device)
        writer.end_page()
    writer.close()

    doc = pymupdf.open(str(path))
    for number, page in enumerate(doc.pages(), start=1):
        if header:
            page.insert_text((36, 24), header, fontsize=8)
        if footer:
            page.insert_text((36, page_rect.height - 18), f"{footer} | Page {number} of {doc.page_count}",
                             fontsize=8)
        if watermark:
            center = pymupdf.Point(page_rect.width / 2, page_rect.height / 2)
            page.insert_text(center - (120, -40), watermark, fontsize=40, color=(0.85, 0.85, 0.85),
                             morph=(center, pymupdf.Matrix(30)))
    if outline:
        doc.set_toc(_outline(doc, title, sections))
    doc.set_metadata({"title": title, "author": "pgkb examples", "creationDate": "D:20240102030405+01'00'"})
    encryption = {"encryption": pymupdf.mupdf.PDF_ENCRYPT_AES_256, "user_pw": password,
                  "owner_pw": password + "-owner"} if password else {}
    doc.save(str(path) + ".tmp", garbage=3, deflate=True, **encryption)
    doc.close()
    Path(str(path) + ".tmp").replace(path)
    return path


def _block_html(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{html.escape(block)}</p>"
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block) + "</ul>"
    header, *rows = block

    def cells(row, tag):
        return "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row)

    return (f"<table><tr>{cells(header, 'th')}</tr>"
            + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows) + "</table>")


def _outline(doc, title: str, sections: Sequence[Section]) -> list[list]:
    """Outline entries pointing at the page where each heading's text first appears."""
    entries, page_index = [], 0
    for level, heading in [(0, title)] + [(level, heading) for level, heading, _ in sections]:
        while page_index < doc.page_count and not doc[page_index].search_for(heading):
            page_index += 1
        entries.append([level + 1, heading, min(page_index, doc.page_count - 1) + 1])
    return entries


def write_docx(path: Path, title: str, sections: Sequence[Section], *, page_break_before: Sequence[str] = (),
               header: str | None = None, footer: str | None = None, comment: str | None = None,
               tracked: tuple[str, str, str] | None = None) -> Path:
    """A Word file with Title/Heading styles, bullet lists, tables and explicit page breaks;
    optionally a page header and footer, a comment on the first paragraph, and a last
    paragraph with tracked changes: (kept text, inserted text, deleted text)."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = "pgkb examples"
    document.add_heading(title, level=0)
    first_paragraph = None
    for level, heading, blocks in sections:
        if heading in page_break_before:
            document.add_page_break()
        document.add_heading(heading, level=level)
        for block in blocks:
            if isinstance(block, str):
                paragraph = document.add_paragraph(block)
                first_paragraph = first_paragraph or paragraph
            elif isinstance(block, list):
                for item in block:
                    document.add_paragraph(item, style="List Bullet")
            else:
                header_row, *rows = block
                table = document.add_table(rows=0, cols=len(header_row), style="Table Grid")
                for row in (header_row, *rows):
                    for cell, value in zip(table.add_row().cells, row):
                        cell.text = str(value)
    if header:
        document.sections[0].header.paragraphs[0].text = header
    if footer:
        document.sections[0].footer.paragraphs[0].text = footer
    if comment and first_paragraph is not None:
        document.add_comment(first_paragraph.runs, text=comment, author="Reviewer")
    if tracked:
        _add_tracked_changes(document.add_paragraph(), *tracked)
    document.save(str(path))
    return path


def _add_tracked_changes(paragraph, kept: str, inserted: str, deleted: str) -> None:
    """Runs as Word writes them with Track Changes on: an insertion and a deletion."""
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    mark = 'w:id="{}" w:author="Reviewer" w:date="2024-01-02T03:04:05Z"'
    paragraph.add_run(kept + " ")
    paragraph._p.append(parse_xml(f'<w:ins {nsdecls("w")} {mark.format(1)}><w:r><w:t xml:space="preserve">'
                                  f'{html.escape(inserted)} </w:t></w:r></w:ins>'))
    paragraph._p.append(parse_xml(f'<w:del {nsdecls("w")} {mark.format(2)}><w:r><w:delText xml:space="preserve">'
                                  f'{html.escape(deleted)}</w:delText></w:r></w:del>'))


def write_xlsx(path: Path, sheets: dict[str, Sequence[Sequence]], *, title: str | None = None) -> Path:
    """An Excel workbook with one sheet per entry: rows of values, the first the header."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    if title:
        workbook.properties.title = title
    workbook.save(str(path))
    return path


def write_scanned_pdf(path: Path, lines: Sequence[str]) -> Path:
    """A PDF whose one page is a picture of text, with no text layer (as a scanner makes)."""
    import pymupdf

    source = pymupdf.open()
    page = source.new_page(width=420, height=300)
    page.insert_text((30, 60), "\n".join(lines), fontsize=16)
    picture = page.get_pixmap(dpi=200)
    scan = pymupdf.open()
    scan.new_page(width=420, height=300).insert_image(pymupdf.Rect(0, 0, 420, 300), pixmap=picture)
    scan.save(str(path))
    return path


def write_ragged_table_docx(path: Path) -> Path:
    """A Word file whose table has a row short of a cell beneath a vertical merge, as some
    editors write them: python-docx cannot map its column grid (it raises ValueError)."""
    import docx
    from docx.oxml.ns import qn

    document = docx.Document()
    document.add_paragraph("Before the table.")
    table = document.add_table(rows=3, cols=2)
    for (row, column), text in {(0, 0): "A", (0, 1): "Merged B1-B3", (2, 0): "C"}.items():
        table.cell(row, column).text = text
    for row, merge in ((0, "restart"), (2, "continue")):
        properties = table.rows[row]._tr.tc_lst[1].get_or_add_tcPr()
        properties.append(properties.makeelement(qn("w:vMerge"), {qn("w:val"): merge}))
    short_row = table.rows[1]._tr
    short_row.remove(short_row.tc_lst[1])
    document.add_paragraph("After the table.")
    document.save(str(path))
    return path


def write_table_pdf(path: Path, rows: Sequence[Sequence[str]], *, rules: str = "none", note: str | None = None,
                    before: str = "The figures below are for the last three years.",
                    after: str = "The text goes on after the table.") -> Path:
    """A one-page PDF holding a paragraph, a table (the first row its header) and a paragraph,
    each cell's text at its column's left edge. `rules`: "none" (no ruling lines), "booktabs"
    (horizontal rules above and below the header and below the table) or "grid" (every cell
    framed). `note`: a line under the table; in a grid, a last row framed across all columns."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    left, width, row_height, size = 72, 450, 18, 10
    column_width = width / len(rows[0])
    page.insert_text((left, 100), before, fontsize=size)
    top = 130
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            page.insert_text((left + 4 + c * column_width, top + r * row_height + 13), text, fontsize=size)
    bottom = top + len(rows) * row_height
    framed_note = note is not None and rules == "grid"
    if rules == "booktabs":
        for y, thickness in ((top, 1.0), (top + row_height, 0.5), (bottom, 1.0)):
            page.draw_line((left, y), (left + width, y), width=thickness)
    elif rules == "grid":
        end = bottom + row_height if framed_note else bottom
        for y in [top + r * row_height for r in range(len(rows) + 1)] + ([end] if framed_note else []):
            page.draw_line((left, y), (left + width, y), width=0.5)
        for c in range(len(rows[0]) + 1):
            page.draw_line((left + c * column_width, top), (left + c * column_width, bottom), width=0.5)
        if framed_note:
            page.draw_line((left, bottom), (left, end), width=0.5)
            page.draw_line((left + width, bottom), (left + width, end), width=0.5)
    if note is not None:
        page.insert_text((left + 4, bottom + 13), note, fontsize=8)
        bottom += row_height
    page.insert_text((left, bottom + 30), after, fontsize=size)
    doc.save(str(path))
    doc.close()
    return path
