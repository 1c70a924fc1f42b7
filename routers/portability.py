"""Export and import in the browser: the pages under /account that download your posts and
bring posts in from an export, Markdown files or WordPress."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse

from database import SessionDep
from services import importing, media
from services.errors import ConflictError
from services.import_formats import ImportRefusedError, ImportTooLargeError
from web.deps import RequiredUser, get_current_user
from web.middleware import BodyLimitedRoute, body_limit
from web.portability import (
    IMPORT_BODY_LIMIT,
    IMPORT_LIMITS,
    ImportUpload,
    export_response,
    read_import_form,
    run_import,
)
from web.templating import render

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)

ImportForm = Annotated[ImportUpload, Depends(read_import_form)]


@router.get("/account/export", name="account_export")
def export_page(request: Request, user: RequiredUser) -> Response:
    """What an export holds, and the button that downloads it."""
    return render(request, "account/export.html", {})


@router.get("/account/export/download", name="account_export_download")
def export_download(request: Request, db: SessionDep, user: RequiredUser) -> StreamingResponse:
    """Your posts, images and their data as one zip."""
    return export_response(request, db, user)


def _import_page(
    request: Request,
    report: importing.ImportReport | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {"report": report, "error": error, "limits": IMPORT_LIMITS}
    return render(request, "account/import.html", context, status_code)


@router.get("/account/import", name="account_import")
def import_page(request: Request, user: RequiredUser) -> Response:
    """The import form."""
    return _import_page(request)


@router.post("/account/import", name="account_import_submit")
@body_limit(IMPORT_BODY_LIMIT)
def import_submit(
    request: Request, db: SessionDep, user: RequiredUser, upload: ImportForm
) -> Response:
    """Import the uploaded file and show what came in and what was left out. The result is
    shown in answer to the POST: sending it again imports nothing twice, since each post it
    wrote now has its slug taken."""
    if upload.file is None:
        status_code = 413 if upload.too_large else 422
        return _import_page(request, error=upload.error, status_code=status_code)
    try:
        report = run_import(request, db, user, upload.file)
    except ImportTooLargeError as exc:
        return _import_page(request, error=str(exc), status_code=413)
    except ImportRefusedError as exc:
        return _import_page(request, error=str(exc), status_code=422)
    except ConflictError as exc:
        return _import_page(request, error=str(exc), status_code=status.HTTP_409_CONFLICT)
    except media.PictureBusy as exc:
        return _import_page(request, error=str(exc), status_code=503)
    return _import_page(request, report=report)
