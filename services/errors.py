"""Domain errors. Services raise these; `web.errors` maps them to 404/403/409 for the pages
and the API alike."""


class NotFoundError(Exception):
    """The thing asked for does not exist (or is not visible to the one asking)."""


class ForbiddenError(Exception):
    """The thing exists, but the one asking may not change it."""


class WrongPasswordError(ForbiddenError):
    """A change that needs the account's current password came without the right one."""


class SuspendedError(ForbiddenError):
    """The account is suspended by an admin: it may not log in until that is lifted."""

    message = "This account is suspended."


class ConflictError(Exception):
    """The change clashes with what is stored."""


class DuplicateError(ConflictError):
    """The username or the email address belongs to another account.

    Deliberately not told which: saying "that email address is already registered" would
    tell anyone who asks whether an address has an account here.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EditConflictError(ConflictError):
    """The post changed since the version the client edited: saving would lose that change."""


class ThrottledError(Exception):
    """Too many recent attempts: the client must wait `retry_after` seconds. The routers
    answer it themselves (429 with Retry-After, or the form again with a message)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class BusyError(Exception):
    """The server is saturated right now (too many pictures decoding at once): worth a retry
    in a moment, and answered 503 with Retry-After."""


class InvalidFieldError(Exception):
    """A field's value breaks a rule only the domain can check (one that needs the clock or
    the stored data); answered like a schema's field error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidLinkError(Exception):
    """A mailed link that is unknown, already used, expired or replaced by a newer one."""


class WrongCodeError(Exception):
    """A sign-in code (from the authenticator app, or a recovery code) is missing, wrong, or
    was used already; `missing` tells the first apart (it is not counted as a failure)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


class PendingLoginError(Exception):
    """The second step of a login came without a live first step (none, or expired)."""
