"""Domain errors. Services raise these; `web.errors` maps them to 404/403/409 for the pages
and the API alike."""


class NotFoundError(Exception):
    """The thing asked for does not exist (or is not visible to the one asking)."""


class ForbiddenError(Exception):
    """The thing exists, but the one asking may not change it."""


class ConflictError(Exception):
    """The change clashes with what is stored."""


class DuplicateError(ConflictError):
    """A unique field (username, email) is already taken."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class EditConflictError(ConflictError):
    """The post changed since the version the client edited: saving would lose that change."""


class BusyError(Exception):
    """The server is saturated right now (too many pictures decoding at once): worth a retry
    in a moment, and answered 503 with Retry-After."""
