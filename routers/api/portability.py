"""The JSON API for taking your words elsewhere and bringing them here: export and import."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Request, UploadFile, status
from fastapi.responses import StreamingResponse

from database import SessionDep
from routers.api.common import AUTH, BODY, TOO_LARGE, Responses, error_response
from schemas import ImportReportPublic
from services import media
from services.import_formats import ImportRefusedError, ImportTooLargeError
from web.deps import ApiUser
from web.middleware import BodyLimitedRoute, body_limit
from web.portability import IMPORT_BODY_LIMIT, export_response, report_body, run_import

router = APIRouter(route_class=BodyLimitedRoute)

ZIP: Responses = {
    200: {
        "description": "A zip: one Markdown file per post, media/ and posts.json",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}
IMPORT_REFUSED: Responses = {
    409: error_response("The media library has no room for the import's images"),
    503: error_response(media.BUSY),
}


@router.get("/users/me/export", response_class=StreamingResponse, responses=AUTH | ZIP)
def export_my_posts(request: Request, db: SessionDep, user: ApiUser) -> StreamingResponse:
    """Every post of yours (drafts and scheduled ones too, told apart by `status`) as
    Markdown files with YAML front matter, the images they show in `media/`, and
    `posts.json` with the same data. Never cached."""
    return export_response(request, db, user)


@contextmanager
def import_refused() -> Iterator[None]:
    """413 for an upload past the limits (also once inflated), 422 for one that cannot be
    imported at all; nothing is written either way."""
    try:
        yield
    except ImportTooLargeError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except ImportRefusedError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.post(
    "/users/me/import",
    response_model=ImportReportPublic,
    responses=AUTH | BODY | TOO_LARGE | IMPORT_REFUSED,
)
@body_limit(IMPORT_BODY_LIMIT)
def import_my_posts(
    request: Request,
    file: Annotated[
        UploadFile,
        File(description="An Inkwell export, a zip of Markdown files, or a WordPress export"),
    ],
    db: SessionDep,
    user: ApiUser,
) -> Any:
    """Import posts into your account: all that can be imported in one transaction, and a
    report of what was left out and why (a slug you already use, a post breaking the
    rules, a refused image). 422 for a file that is no archive or WordPress export, or
    whose XML declares entities; 413 past the size limits; 409 when the images do not fit
    in your media library."""
    with import_refused():
        return report_body(run_import(request, db, user, file.file))
