"""Pictures of text (.png .jpg .jpeg .tif .tiff), read by Tesseract OCR as a scanned PDF's
pages are: each picture, or each frame of a multi-page TIFF, becomes a page of a PDF that the
PDF parser (ingest.parsers.pdf) reads, OCR included. Without Tesseract they cannot be read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import ParsedDocument, ParseError, ParseOptions, pdf

MEDIA_TYPES = ("image/png", "image/jpeg", "image/tiff")


def parse_image(path: Path, options: ParseOptions) -> ParsedDocument:
    if not pdf._ocr_languages(options.ocr_languages):
        raise ParseError("no text layer", "a picture is read by OCR: install tesseract-ocr (and "
                                          "tesseract-ocr-chi-sim), and leave PGKB_OCR_LANGUAGES on")
    try:  # PyMuPDF as the PDF parser imports it (without its layout analyser)
        with pdf.pymupdf.open(path, filetype=path.suffix.lower().lstrip(".")) as picture:
            pages = picture.convert_to_pdf()
    except Exception as exc:  # PyMuPDF raises FileDataError, RuntimeError, ValueError...
        raise ParseError("corrupt", f"not a readable picture ({exc})") from None
    with tempfile.NamedTemporaryFile(suffix=".pdf", prefix="pgkb-image-") as scan:
        scan.write(pages)
        scan.flush()
        return pdf.parse_pdf(Path(scan.name), options)
