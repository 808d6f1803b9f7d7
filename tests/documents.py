"""Writers of real PDF and Word files, for the tests' fixtures and for examples/.

A document is a title and a list of sections: (level, heading, blocks), where a block is a
paragraph (str), a bullet list (list of str) or a table (tuple of rows, the first the header).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence, Union

Block = Union[str, list, tuple]
Section = tuple[int, str, Sequence[Block]]

_PDF_CSS = """
body { font-family: serif; font-size: 10pt; }
h1 { font-size: 18pt; } h2 { font-size: 14pt; } h3 { font-size: 12pt; }
table { border-collapse: collapse; width: 100%; } th, td { border: 1px solid black; padding: 2px 4px; }
"""


def write_pdf(path: Path, title: str, sections: Sequence[Section], *, footer: str | None = None,
              outline: bool = True, paper: str = "a5", page_break_before: Sequence[str] = ()) -> Path:
    """A PDF with real text, headings in larger type, bordered tables and an optional footer."""
    import pymupdf

    parts = [f"<h1>{html.escape(title)}</h1>"]
    for level, heading, blocks in sections:
        style = " style='page-break-before: always'" if heading in page_break_before else ""
        parts.append(f"<h{level + 1}{style}>{html.escape(heading)}</h{level + 1}>")
        parts.extend(_block_html(block) for block in blocks)
    page_rect = pymupdf.paper_rect(paper)
    body_rect = page_rect + (36, 40, -36, -40)
    writer = pymupdf.DocumentWriter(str(path))
    story = pymupdf.Story(html="".join(parts), user_css=_PDF_CSS)
    more = True
    while more:
        device = writer.begin_page(page_rect)
        more, _ = story.place(body_rect)
        story.draw(device)
        writer.end_page()
    writer.close()

    doc = pymupdf.open(str(path))
    if footer:
        for number, page in enumerate(doc, start=1):
            page.insert_text((36, page_rect.height - 18), f"{footer} | Page {number} of {doc.page_count}",
                             fontsize=8)
    if outline:
        doc.set_toc(_outline(doc, title, sections))
    doc.set_metadata({"title": title, "author": "pgkb examples"})
    doc.save(str(path) + ".tmp", garbage=3, deflate=True)
    doc.close()
    Path(str(path) + ".tmp").replace(path)
    return path


def _block_html(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{html.escape(block)}</p>"
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block) + "</ul>"
    header, *rows = block
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row)
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


def write_docx(path: Path, title: str, sections: Sequence[Section], *, page_break_before: Sequence[str] = ()) -> Path:
    """A Word file with Title/Heading styles, bullet lists, tables and explicit page breaks."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = "pgkb examples"
    document.add_heading(title, level=0)
    for level, heading, blocks in sections:
        if heading in page_break_before:
            document.add_page_break()
        document.add_heading(heading, level=level)
        for block in blocks:
            if isinstance(block, str):
                document.add_paragraph(block)
            elif isinstance(block, list):
                for item in block:
                    document.add_paragraph(item, style="List Bullet")
            else:
                header, *rows = block
                table = document.add_table(rows=0, cols=len(header), style="Table Grid")
                for row in (header, *rows):
                    for cell, value in zip(table.add_row().cells, row):
                        cell.text = str(value)
    document.save(str(path))
    return path
