"""Request limits. Body sizes are enforced as the body arrives: a declared Content-Length over the limit is
refused before anything is read, and a body that grows past it (chunked, or lying) is cut off."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgkb.errors import QueryError

# How far a request reads around a chunk, each way (the chunks route, MCP's get_context).
MAX_NEIGHBOURS = 5


class BodyTooLarge(QueryError):
    """A request body over the limit (413)."""


class LimitBody:
    """ASGI middleware: uploads (POST to a path ending in `upload_path_suffix`) may carry
    `upload_bytes`, any other request `other_bytes`."""

    def __init__(self, app: ASGIApp, upload_bytes: int, other_bytes: int, upload_path_suffix: str):
        self.app, self.upload_bytes, self.other_bytes = app, upload_bytes, other_bytes
        self.upload_path_suffix = upload_path_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = scope["method"] == "POST" and scope["path"].endswith(self.upload_path_suffix)
        limit = self.upload_bytes if is_upload else self.other_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(_message(limit))
            return message

        await self.app(scope, limited_receive, send)


def _message(limit: int) -> str:
    return f"the request body is larger than this server takes ({limit:,} bytes)"


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _message(limit)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
