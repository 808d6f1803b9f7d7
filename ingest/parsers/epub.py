"""EPUB: a zip of XHTML chapters. Each chapter of the spine, in reading order, is a section
titled by its entry in the table of contents (else its first heading, its <title>, or
"Chapter N"), with the headings inside it nested below; the chapters are read as HTML
(ingest.parsers.web). The package's Dublin Core title, creator and language are metadata.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from urllib.parse import unquote

from lxml import etree
from unstructured.documents.elements import Element, Title

from . import ParsedDocument, ParseError, ParseOptions, too_large
from .elements import cell_text, element_metadata, nested
from .text import decoded
from .web import html_elements

_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container", "opf": "http://www.idpf.org/2007/opf",
       "dc": "http://purl.org/dc/elements/1.1/", "ncx": "http://www.daisy.org/z3986/2005/ncx/",
       "xhtml": "http://www.w3.org/1999/xhtml", "epub": "http://www.idpf.org/2007/ops"}
# No DTDs, entities or network: a book is data, not instructions to the XML parser.
_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True)


def parse_epub(path: Path, options: ParseOptions) -> ParsedDocument:
    try:
        with zipfile.ZipFile(path) as book:
            if options.max_chars is not None:  # before a zip bomb is unpacked
                unpacked = sum(info.file_size for info in book.infolist())
                if unpacked > 8 * options.max_chars:
                    raise too_large(options.max_chars)
            package_path = _package_path(book)
            package = _xml(book, package_path)
            chapters = _spine(package, posixpath.dirname(package_path))
            titles = _toc_titles(book, package, posixpath.dirname(package_path))
            elements = [e for number, chapter in enumerate(chapters, 1)
                        for e in _chapter(book, chapter, titles.get(chapter), number)]
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, EOFError) as exc:
        raise ParseError("corrupt", f"not a readable EPUB file ({type(exc).__name__}: {exc})") from None
    return ParsedDocument(elements, _metadata(package, len(chapters)))


def _package_path(book: zipfile.ZipFile) -> str:
    container = _xml(book, "META-INF/container.xml")
    found = container.xpath("//c:rootfile/@full-path", namespaces=_NS)
    if not found:
        raise ParseError("corrupt", "not an EPUB file: META-INF/container.xml names no package")
    return str(found[0])


def _xml(book: zipfile.ZipFile, name: str):
    root = etree.fromstring(book.read(name), _XML)
    if root is None:
        raise ParseError("corrupt", f"not an EPUB file: {name} is not XML")
    return root


def _spine(package, folder: str) -> list[str]:
    """The chapters' paths in the zip, in reading order."""
    manifest = {item.get("id"): item.get("href") for item in package.xpath("//opf:manifest/opf:item", namespaces=_NS)}
    hrefs = [manifest.get(ref) for ref in package.xpath("//opf:spine/opf:itemref/@idref", namespaces=_NS)]
    return [_joined(folder, href) for href in hrefs if href]


def _toc_titles(book: zipfile.ZipFile, package, folder: str) -> dict[str, str]:
    """Chapter path -> its title in the table of contents: EPUB 3's nav document, else EPUB 2's NCX."""
    for xpath, labels in (("//opf:manifest/opf:item[contains(@properties, 'nav')]/@href", "//xhtml:nav//xhtml:a"),
                          ("//opf:manifest/opf:item[@media-type='application/x-dtbncx+xml']/@href",
                           "//ncx:navPoint")):
        href = package.xpath(xpath, namespaces=_NS)
        if not href:
            continue
        toc_path = _joined(folder, str(href[0]))
        toc = _xml(book, toc_path)
        titles: dict[str, str] = {}
        for entry in toc.xpath(labels, namespaces=_NS):
            if entry.tag.endswith("navPoint"):
                label = "".join(entry.xpath("./ncx:navLabel//text()", namespaces=_NS))
                target = "".join(entry.xpath("./ncx:content/@src", namespaces=_NS))
            else:
                label, target = "".join(entry.itertext()), entry.get("href") or ""
            chapter = _joined(posixpath.dirname(toc_path), target.split("#")[0])
            if cell_text(label):
                titles.setdefault(chapter, cell_text(label))  # a chapter's first entry names it
        return titles
    return {}


def _chapter(book: zipfile.ZipFile, name: str, toc_title: str | None, number: int) -> list[Element]:
    text = decoded(book.read(name)) or ""
    elements, metadata = html_elements(text)
    first = elements[0] if elements and isinstance(elements[0], Title) else None
    title = toc_title or (first.text if first is not None else None) or metadata.get("title") or f"Chapter {number}"
    if first is not None and first.text == title:
        elements = elements[1:]  # the chapter's own heading, which its section title repeats
    if not elements and toc_title is None and first is None:
        return []  # a cover page or an empty file in the spine
    # The chapter's top headings come right under its title.
    top = min((e.metadata.category_depth or 0 for e in elements if isinstance(e, Title)), default=0)
    return [Title(title, metadata=element_metadata(category_depth=0)), *nested(elements, 1 - top)]


def _joined(folder: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(folder, unquote(href)))


def _metadata(package, chapters: int) -> dict:
    def first(field: str) -> str:
        return cell_text("".join(package.xpath(f"//dc:{field}[1]//text()", namespaces=_NS)))

    found = {"title": first("title"), "author": first("creator"), "language": first("language"),
             "chapters": chapters}
    return {k: v for k, v in found.items() if v}
