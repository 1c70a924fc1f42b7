"""HTTP plumbing of export and import: the streamed download, and the import upload read
within its limit for the API and the form alike."""

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from config import Settings, utcnow
from models import Post, User
from services import export, importing
from services.import_formats import Limits, format_size, open_upload
from web.media import get_storage
from web.middleware import UPLOAD_OVERHEAD, RequestTooLarge
from web.privacy import PRIVATE_CACHE_CONTROL, mark_personal
from web.security import verify_csrf
from web.urls import post_url

IMPORT_LIMITS = Limits()
IMPORT_BODY_LIMIT = IMPORT_LIMITS.max_upload_bytes + UPLOAD_OVERHEAD
TOO_LARGE = f"The file is larger than {format_size(IMPORT_LIMITS.max_upload_bytes)}."


def export_response(request: Request, db: Session, user: User) -> StreamingResponse:
    """The author's export as a zip download, streamed as it is written; personal, so
    never stored by any cache."""
    mark_personal(request)

    def canonical(post: Post) -> str:
        return post_url(request, post)

    body = export.export_archive(
        db, authors=[user], storage=get_storage(request), canonical_url=canonical
    )
    name = export.archive_name(user.username, utcnow())
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": PRIVATE_CACHE_CONTROL.decode(),
    }
    return StreamingResponse(body, media_type="application/zip", headers=headers)


def run_import(request: Request, db: Session, user: User, file: BinaryIO) -> importing.ImportReport:
    """Import an uploaded zip or WordPress file into the user's account. Raises
    ImportRefusedError (ImportTooLargeError), QuotaExceededError or PictureBusy."""
    settings: Settings = request.app.state.settings
    return importing.import_posts(
        db,
        user=user,
        source=open_upload(file, IMPORT_LIMITS),
        storage=get_storage(request),
        limits=IMPORT_LIMITS,
        max_files=settings.media_max_files_per_user,
        max_bytes=settings.media_max_bytes_per_user,
        new_account=settings.new_account_limit,
    )


@dataclass(frozen=True)
class ImportUpload:
    """The file field of the import form, or why there is none."""

    file: BinaryIO | None = None
    error: str | None = None
    too_large: bool = False


async def read_import_form(request: Request) -> AsyncIterator[ImportUpload]:
    """Parse the import form here, so an oversize body becomes a form error rather than a
    bare 413; the CSRF token is checked on the parsed form. The upload stays on disk
    (spooled) until the request ends."""
    try:
        form = await request.form(max_files=1, max_fields=8)
    except RequestTooLarge:
        yield ImportUpload(error=TOO_LARGE, too_large=True)
        return
    try:
        await verify_csrf(request)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            yield ImportUpload(error="Choose a file to import.")
        else:
            yield ImportUpload(file=upload.file)
    finally:
        await form.close()


def report_body(report: importing.ImportReport) -> dict[str, Iterable[object]]:
    return {"imported": report.imported, "skipped": report.skipped}
