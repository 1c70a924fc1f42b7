"""Error handlers: JSON for the API, HTML pages in the site layout for everything else."""

import logging
import re
from http import HTTPStatus

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from database import DatabaseBusyError
from services.errors import (
    BusyError,
    ConflictError,
    DuplicateError,
    EditConflictError,
    ForbiddenError,
    InvalidFieldError,
    NotFoundError,
)
from web.deps import LoginRequiredError
from web.middleware import security_headers
from web.templating import render
from web.urls import url_for

logger = logging.getLogger("inkwell")
API_PREFIX = "/api"


def _bytes_as_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _encodable(text: str) -> str:
    # JSON may carry a lone surrogate (\ud800), which no UTF-8 response can hold: echoed
    # back in an error's `input`, it would turn a 422 into a 500.
    return text.encode("utf-8", "replace").decode("utf-8")


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def render_error_page(
    request: Request, status_code: int, message: str | None = None, request_id: str | None = None
) -> Response:
    """The site's error page for `status_code`."""
    phrase = HTTPStatus(status_code).phrase
    context = {
        "status_code": status_code,
        "phrase": phrase,
        "message": message,
        "request_id": request_id,
    }
    return render(request, "errors/error.html", context, status_code=status_code)


def _api_methods(request: Request) -> str | None:
    """Every method the API documents for this path (a 405's Allow header must list them
    all; the router only knows the methods of the first route whose path matched)."""
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return ", ".join(sorted(method.upper() for method in operations))
    return None


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if _wants_json(request):
        headers = dict(exc.headers or {})
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            headers["Allow"] = _api_methods(request) or headers.get("Allow", "")
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)
    default_phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if exc.detail != default_phrase else None
    return render_error_page(request, exc.status_code, message)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    if _wants_json(request):
        errors = [{k: v for k, v in e.items() if k != "ctx"} for e in exc.errors()]
        # A body that is not JSON comes back as raw bytes in `input`.
        readable = jsonable_encoder(errors, custom_encoder={bytes: _bytes_as_text, str: _encodable})
        return JSONResponse({"detail": readable}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    # A page address with a malformed part names nothing that exists.
    if any(error["loc"][:1] == ("path",) for error in exc.errors()):
        return render_error_page(request, status.HTTP_404_NOT_FOUND)
    return render_error_page(request, status.HTTP_400_BAD_REQUEST, "The request was malformed.")


# The one place domain errors become statuses, for the pages and the API alike.
DOMAIN_STATUSES: dict[type[Exception], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
    ConflictError: status.HTTP_409_CONFLICT,
}
EDIT_CONFLICT = "The post was changed by someone else since this version; reload it and retry"


async def domain_error(request: Request, exc: Exception) -> Response:
    status_code = next(code for kind, code in DOMAIN_STATUSES.items() if isinstance(exc, kind))
    if isinstance(exc, DuplicateError):
        detail = exc.message
    elif isinstance(exc, EditConflictError):
        detail = EDIT_CONFLICT
    else:
        detail = str(exc) or HTTPStatus(status_code).phrase
    return await http_error(request, StarletteHTTPException(status_code, detail))


# Seconds a client is asked to wait when the database is saturated: writes take
# milliseconds, so by then the queue has moved on.
BUSY_RETRY_AFTER_S = 1
BUSY_MESSAGE = "The site is busy right now; please try again in a moment."


# PostgreSQL's connection failures (class 08), and a server shutting down, crashed, or still
# starting (57P01-57P03): a restart of the database, over in seconds.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# A deadlock or serialisation failure: PostgreSQL rolled the transaction back, and the same
# request a moment later goes through.
_RETRY_SQLSTATES = ("40P01", "40001")


def _is_transient(exc: OperationalError) -> bool:
    """Worth a retry in a moment: SQLite's busy timeout ran out, PostgreSQL's lock_timeout
    fired (SQLSTATE 55P03) or it chose this transaction to end a deadlock, or the database
    went away and is coming back: a connection was cut, or none could be made (the error
    then comes with no statement)."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return (
        "database is locked" in str(exc.orig)
        or sqlstate == "55P03"
        or exc.connection_invalidated
        or exc.statement is None
        or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        or sqlstate in _RETRY_SQLSTATES
    )


async def database_busy(request: Request, exc: Exception) -> Response:
    """503 with Retry-After when the database cannot take the write in time or is briefly
    away, or pictures are queueing to be decoded; anything else the database raises is a
    real error."""
    if isinstance(exc, OperationalError) and not _is_transient(exc):
        return await unhandled_error(request, exc)
    logger.warning("Database busy: 503 for %s %s", request.method, request.url.path)
    busy = StarletteHTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        BUSY_MESSAGE,
        headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
    )
    response = await http_error(request, busy)
    response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
    return response


async def invalid_field(request: Request, exc: InvalidFieldError) -> Response:
    """A rule the domain checks (a schedule in the past): the same shape as a schema's
    field error."""
    if _wants_json(request):
        error = {"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}
        return JSONResponse({"detail": [error]}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return render_error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message)


async def login_required(request: Request, exc: LoginRequiredError) -> Response:
    login_url = url_for(request, "login").include_query_params(next=exc.next_path)
    return RedirectResponse(str(login_url), status.HTTP_303_SEE_OTHER)


async def unhandled_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the client; the request id ties the two.
    request_id = getattr(request.state, "request_id", "-")
    logger.exception(
        "Unhandled error on %s %s [request %s]", request.method, request.url.path, request_id
    )
    if _wants_json(request):
        response: Response = JSONResponse(
            {"detail": "Internal Server Error"}, status.HTTP_500_INTERNAL_SERVER_ERROR
        )
    else:
        response = render_error_page(
            request, status.HTTP_500_INTERNAL_SERVER_ERROR, request_id=request_id
        )
    # This response is made outside the middleware stack, so it adds their headers itself.
    for name, value in [*security_headers(request.scope), (b"x-request-id", request_id.encode())]:
        response.headers[name.decode()] = value.decode()
    return response


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for kind in DOMAIN_STATUSES:
        app.add_exception_handler(kind, domain_error)
    app.add_exception_handler(LoginRequiredError, login_required)
    app.add_exception_handler(InvalidFieldError, invalid_field)
    app.add_exception_handler(DatabaseBusyError, database_busy)
    app.add_exception_handler(BusyError, database_busy)
    app.add_exception_handler(OperationalError, database_busy)
    app.add_exception_handler(Exception, unhandled_error)
