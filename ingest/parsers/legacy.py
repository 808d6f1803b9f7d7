"""Legacy and OpenDocument office files (.doc .rtf .odt .wps, .xls .ods, .ppt .odp), converted
to their Office Open XML kin by LibreOffice headless, then read by that format's parser.

The conversion runs in the parser's worker, as its child process: it inherits the worker's
memory limit, and the pool kills the worker's whole process group when the file overruns its
time (ingest.parsers.pool), so a conversion that hangs takes nothing with it. A worker
converts one file at a time, with a LibreOffice profile of its own (two instances sharing a
profile wait on each other's lock).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from . import ParsedDocument, ParseError, ParseOptions, docx, slides, xlsx


def _debian_package(program: str) -> str:
    return f"libreoffice-{program}-nogui"


# Media type -> (the format LibreOffice writes, its parser, the Debian package that converts it).
_CONVERSIONS: dict[str, tuple[str, Callable[[Path, ParseOptions], ParsedDocument], str]] = {
    "application/msword": ("docx", docx.parse_docx, _debian_package("writer")),
    "application/rtf": ("docx", docx.parse_docx, _debian_package("writer")),
    "application/vnd.oasis.opendocument.text": ("docx", docx.parse_docx, _debian_package("writer")),
    "application/vnd.ms-works": ("docx", docx.parse_docx, _debian_package("writer")),
    "application/vnd.ms-excel": ("xlsx", xlsx.parse_xlsx, _debian_package("calc")),
    "application/vnd.oasis.opendocument.spreadsheet": ("xlsx", xlsx.parse_xlsx, _debian_package("calc")),
    "application/vnd.ms-powerpoint": ("pptx", slides.parse_pptx, _debian_package("impress")),
    "application/vnd.oasis.opendocument.presentation": ("pptx", slides.parse_pptx, _debian_package("impress")),
}
MEDIA_TYPES = tuple(_CONVERSIONS)


def parse_legacy(path: Path, options: ParseOptions, media_type: str) -> ParsedDocument:
    target, parse_converted, package = _CONVERSIONS[media_type]
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise ParseError("unsupported", f"{path.suffix} files are converted by LibreOffice, which is not "
                                        f"installed (Debian: apt-get install {package})")
    with tempfile.TemporaryDirectory(prefix="pgkb-convert-") as folder:
        converted = _convert(soffice, path, target, Path(folder))
        document = parse_converted(converted, options)
    document.metadata["converted_from"] = path.suffix.lower()
    return document


def _convert(soffice: str, path: Path, target: str, folder: Path) -> Path:
    # LibreOffice names its output after the input: a copy under a plain name spares it odd ones.
    source = folder / f"document{path.suffix.lower()}"
    shutil.copyfile(path, source)
    done = subprocess.run(
        [soffice, f"-env:UserInstallation={_profile().as_uri()}", "--headless", "--norestore", "--nolockcheck",
         "--convert-to", target, "--outdir", str(folder), str(source)],
        stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )
    converted = folder / f"document.{target}"
    if not converted.exists():
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ParseError("corrupt", f"LibreOffice could not convert it (exit status {done.returncode}"
                                    + (f": {said[-1][:200]})" if said else ")"))
    return converted


@cache
def _profile() -> Path:
    """This worker's LibreOffice profile, made on its first conversion and kept for the next."""
    profile = Path(tempfile.mkdtemp(prefix="pgkb-libreoffice-"))
    atexit.register(shutil.rmtree, profile, ignore_errors=True)
    return profile
