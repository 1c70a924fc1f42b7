"""ASGI middleware: request-body size limits enforced while the body streams in."""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_BODY_LIMIT = 1024 * 1024


class RequestTooLarge(HTTPException):
    """The body grew past the limit. An HTTPException, so FastAPI's body parsing re-raises it
    as it is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit // 1024} KiB.")
        self.limit = limit


class BodyLimitMiddleware:
    """Count body bytes as they arrive and stop at the limit, whatever Content-Length says.

    `limits` maps exact paths to their own limit (uploads); other paths get `default`.
    """

    def __init__(
        self, app: ASGIApp, default: int = DEFAULT_BODY_LIMIT, limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise RequestTooLarge(limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
