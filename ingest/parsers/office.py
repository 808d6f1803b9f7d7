"""Office files that are not the zip packages their names promise."""

from __future__ import annotations

from pathlib import Path

from . import ParseError

# Password-protected .docx/.xlsx files are OLE compound files holding an encrypted package;
# so are the old binary .doc/.xls/.ppt formats.
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def refuse_encrypted(path: Path, kind: str) -> None:
    """Raise ParseError for a password-protected or old binary Office file."""
    with path.open("rb") as f:
        if f.read(len(_OLE_SIGNATURE)) != _OLE_SIGNATURE:
            return
        content = f.read()
    if _ENCRYPTED_PACKAGE in content:
        raise ParseError("encrypted", f"a password-protected {kind} file; save it without a password to ingest it")
    raise ParseError("unsupported", f"an old binary {kind} file, not the XML format its name says (named .doc, "
                                    ".xls or .ppt, LibreOffice converts it)")
