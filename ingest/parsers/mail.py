"""E-mail: .eml through the standard library's `email` package, Outlook .msg through extract-msg.

The subject is the document's title (and its first heading), sender, recipients and date its
metadata (masked like any text), the body its text: the HTML body when there is one (read by
ingest.parsers.web), else the plain text. Attachments come back unparsed, as the document's
Attachments; the ingest run makes each a document of its own under the message's key.
Pictures the HTML body shows inline are no attachments.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from pathlib import Path, PurePosixPath

from unstructured.documents.elements import Element, Title

from . import Attachment, ParsedDocument, ParseError, ParseOptions
from .elements import cell_text, element_metadata, nested
from .text import decoded, text_elements
from .web import html_elements

# A message and the messages attached to it, however deep, bring at most this many
# attachments, and messages are opened at most this deep: more is an attachment bomb.
MAX_ATTACHMENTS = 50
MAX_DEPTH = 3
_HEADERS = ("from", "to", "cc", "date")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def parse_eml(path: Path, options: ParseOptions) -> ParsedDocument:
    with path.open("rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    if not any(message.get(name) for name in ("subject", *_HEADERS)):
        raise ParseError("corrupt", "not an e-mail message (no From, To, Subject or Date header)")
    assert isinstance(message, EmailMessage)  # what the default policy makes
    headers = {name: _header(message, name) for name in _HEADERS}
    body = message.get_body(preferencelist=("html", "plain"))
    content = _content(body) if body is not None else ""
    is_html = body is not None and body.get_content_subtype() == "html"
    parts = [part for part in message.iter_attachments() if not _inline_picture(part)]
    _check_count(len(parts))
    return _document(_header(message, "subject"), headers, content, is_html,
                     [(_part_name(part, number), _part_bytes(part)) for number, part in enumerate(parts, 1)])


def parse_msg(path: Path, options: ParseOptions) -> ParsedDocument:
    import extract_msg  # imported where used: only workers that meet a .msg pay for it

    try:
        message = extract_msg.openMsg(str(path))
    except Exception as exc:  # extract-msg and olefile raise many kinds on a file that is not a .msg
        raise ParseError("corrupt", f"not a readable Outlook message ({type(exc).__name__})") from None
    if not isinstance(message, extract_msg.Message):
        message.close()
        raise ParseError("unsupported", "an Outlook item that is not a message (a contact, task or note)")
    try:
        headers = {"from": message.sender, "to": message.to, "cc": message.cc, "date": message.date}
        html = message.htmlBody
        content = (decoded(html) or "") if html else (message.body or "")
        attachments = list(message.attachments)
        _check_count(len(attachments))
        files = [_msg_attachment(attachment, number) for number, attachment in enumerate(attachments, 1)]
        subject = message.subject
    finally:
        message.close()
    return _document(subject or "", {name: _text(value) for name, value in headers.items()}, content,
                     bool(html), [file for file in files if file is not None])


def _document(subject: str, headers: dict[str, str], content: str, is_html: bool,
              files: list[tuple[str, bytes]]) -> ParsedDocument:
    subject = cell_text(subject)
    body = html_elements(content)[0] if is_html else text_elements(content)
    elements: list[Element] = []
    if subject:
        elements = [Title(subject, metadata=element_metadata(category_depth=0)), *nested(body)]
    else:
        elements = body
    metadata = {"title": subject, **headers}
    return ParsedDocument(elements, {k: v for k, v in metadata.items() if v},
                          attachments=[Attachment(name, data) for name, data in _unique_names(files)])


def _check_count(count: int) -> None:
    if count > MAX_ATTACHMENTS:
        raise ParseError("too many attachments", f"{count} attachments, more than the {MAX_ATTACHMENTS} a "
                                                 "message may bring")


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    if name == "date":
        try:
            return email.utils.parsedate_to_datetime(str(value)).isoformat()
        except (TypeError, ValueError):
            pass
    return cell_text(str(value))


def _content(part: MIMEPart) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError):  # a charset Python does not know, or bytes it belies
        payload = part.get_payload(decode=True)
        return (decoded(payload) or "") if isinstance(payload, bytes) else ""


def _inline_picture(part: EmailMessage) -> bool:
    return (part.get_content_maintype() == "image" and part.get("content-id") is not None
            and part.get_content_disposition() != "attachment")


def _part_name(part: EmailMessage, number: int) -> str:
    if part.get_content_type() == "message/rfc822":
        return part.get_filename() or f"message-{number}.eml"
    return part.get_filename() or f"attachment-{number}"


def _part_bytes(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_content()
        return inner.as_bytes() if isinstance(inner, EmailMessage) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _msg_attachment(attachment, number: int) -> tuple[str, bytes] | None:
    name = attachment.longFilename or attachment.shortFilename or f"attachment-{number}"
    data = attachment.data
    if isinstance(data, bytes):
        return name, data
    if hasattr(data, "exportBytes"):  # an Outlook message attached to this one
        return (name if name.lower().endswith(".msg") else f"{name}.msg"), data.exportBytes()
    return None  # a link to a file elsewhere, or an OLE object: no file to read


def _text(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return cell_text(str(value)) if value else ""


def _unique_names(files: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Each attachment named by one safe path segment, unique within the message."""
    named: list[tuple[str, bytes]] = []
    taken: set[str] = set()
    for number, (name, data) in enumerate(files, 1):
        name = _UNSAFE_NAME.sub("_", name).strip(" .") or f"attachment-{number}"
        stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
        candidate, copy = name, 1
        while candidate.lower() in taken:
            copy += 1
            candidate = f"{stem} ({copy}){suffix}"
        taken.add(candidate.lower())
        named.append((candidate, data))
    return named
