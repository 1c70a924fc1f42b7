"""Profile pictures: validate an upload, normalise it to a square JPEG, store and delete it.

Uploaded bytes are hostile until Pillow has decoded them. They are identified by content (never
by file name or declared content type), refused before decoding if they declare too many pixels,
and re-encoded from pixels only, so nothing from the original file (scripts, polyglots, EXIF
with GPS positions, comments) reaches the stored avatar.
"""

import logging
import os
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

logger = logging.getLogger("inkwell.uploads")
MAX_PICTURE_BYTES: int = 4 * 1024 * 1024
AVATAR_SIZE: int = 300
# Well below Pillow's own MAX_IMAGE_PIXELS (~89 Mpx): a 25 Mpx RGB image already needs 75 MB
# decoded, and no camera photo used as a profile picture is bigger.
MAX_PIXELS: int = 25_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

NOT_A_PICTURE = "Upload a JPEG, PNG, WebP or GIF image."
DAMAGED_PICTURE = "That image is damaged or incomplete. Upload a JPEG, PNG, WebP or GIF image."
TOO_MANY_PIXELS = (
    f"That image is too large in pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels."
)

_CHUNK_BYTES = 64 * 1024
_JPEG_QUALITY = 85
_WHITE = (255, 255, 255)
# Exactly what store_avatar produces; nothing else may reach the file system in remove_avatar.
_STORED_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
# Decoding errors Pillow raises for corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class PictureError(ValueError):
    """The upload is not an acceptable picture; str(exc) is a clear message for the user."""


class PictureTooLarge(PictureError):  # noqa: N818 -- the name is part of the public interface
    """The upload is bigger than the byte limit."""


def read_limited(stream: BinaryIO, limit: int = MAX_PICTURE_BYTES) -> bytes:
    """Read at most `limit` bytes, raising PictureTooLarge as soon as the stream has more."""
    received = bytearray()
    # Ask for one byte beyond the limit at most: that byte is the proof the upload is too big,
    # whatever size the client declared.
    while chunk := stream.read(min(_CHUNK_BYTES, limit + 1 - len(received))):
        received += chunk
        if len(received) > limit:
            raise PictureTooLarge(f"That picture is too big; the limit is {_format_size(limit)}.")
    return bytes(received)


def _format_size(size: int) -> str:
    for unit, unit_bytes in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= unit_bytes:
            return f"{size / unit_bytes:.3g} {unit}"
    return f"{size} bytes"


def make_avatar(data: bytes) -> bytes:
    """Validate and normalise an uploaded picture; return the re-encoded JPEG bytes.

    The result is an AVATAR_SIZE x AVATAR_SIZE RGB JPEG without metadata. Raises PictureError
    for anything that is not an acceptable picture.
    """
    with (
        _decode_first_frame(data) as picture,
        _upright(picture) as upright,
        _to_rgb(upright) as rgb,
        ImageOps.fit(rgb, (AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS) as square,
    ):
        return _encode_jpeg(square)


@contextmanager
def _decode_first_frame(data: bytes) -> Iterator[Image.Image]:
    """Open the upload, refuse pixel bombs from the header alone, then decode the first frame."""
    with _open(data) as picture:
        _check_pixel_count(picture)
        # JPEG can decode at 1/2, 1/4 or 1/8 scale, which saves most of the memory and time for
        # camera photos; keep at least twice the avatar size so LANCZOS has detail to work with.
        picture.draft(None, (2 * AVATAR_SIZE, 2 * AVATAR_SIZE))
        with _pixel_bombs_refused():
            try:
                # Only the current frame is loaded, which right after opening is the first one
                # of an animated GIF or WebP.
                picture.load()
            except _DECODE_ERRORS as exc:
                raise PictureError(DAMAGED_PICTURE) from exc
        yield picture


def _open(data: bytes) -> Image.Image:
    """Identify the format from the bytes; Image.open only reads the header."""
    with _pixel_bombs_refused():
        try:
            return Image.open(BytesIO(data), formats=ACCEPTED_FORMATS)
        except _DECODE_ERRORS as exc:
            raise PictureError(NOT_A_PICTURE) from exc


@contextmanager
def _pixel_bombs_refused() -> Iterator[None]:
    """Turn Pillow's own decompression-bomb guard into PictureError.

    Pillow only warns between MAX_IMAGE_PIXELS and twice that; the warning is made an error so it
    stops the work instead of being logged. _check_pixel_count has the stricter limit, this is a
    second line of defence.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PictureError(TOO_MANY_PIXELS) from exc


def _check_pixel_count(picture: Image.Image) -> None:
    """Refuse by the declared size, before any pixel data is decompressed."""
    width, height = picture.size
    if width < 1 or height < 1:
        raise PictureError(DAMAGED_PICTURE)
    if width * height > MAX_PIXELS:
        raise PictureError(TOO_MANY_PIXELS)


def _upright(picture: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, which phones set instead of rotating the pixels."""
    try:
        return ImageOps.exif_transpose(picture)
    except _DECODE_ERRORS as exc:  # a corrupt EXIF block
        raise PictureError(DAMAGED_PICTURE) from exc


def _to_rgb(picture: Image.Image) -> Image.Image:
    """Convert to RGB, the only mode JPEG and every browser handle alike."""
    if picture.has_transparency_data:
        return _flatten_on_white(picture)
    if picture.mode.startswith("I;16"):
        # A plain conversion clips 16-bit values to 255, which turns the picture white.
        with picture.point(lambda value: value / 256) as eight_bit:
            return eight_bit.convert("RGB")
    return picture.convert("RGB")


def _flatten_on_white(picture: Image.Image) -> Image.Image:
    """JPEG has no alpha; without this, transparent areas come out black or in stray colours."""
    with picture.convert("RGBA") as rgba:
        flattened = Image.new("RGB", rgba.size, _WHITE)
        flattened.paste(rgba, mask=rgba)
        return flattened


def _encode_jpeg(picture: Image.Image) -> bytes:
    # Pillow copies `info` through every operation and the JPEG encoder writes some of it back
    # (comments, for one); clearing it keeps the output free of the upload's metadata.
    picture.info.clear()
    output = BytesIO()
    picture.save(output, "JPEG", quality=_JPEG_QUALITY, optimize=True)
    return output.getvalue()


def store_avatar(jpeg: bytes, directory: Path) -> str:
    """Store the avatar under a new random name in `directory`; return that file name.

    The bytes go to a temporary file that is fsynced and then renamed, so the final name never
    refers to a partial file; on any failure the temporary file is removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Server-chosen names: nothing from the client ends up in a path, and names are unguessable.
    filename = f"{secrets.token_hex(16)}.jpg"
    temporary = directory / f".{secrets.token_hex(16)}.tmp"
    try:
        with temporary.open("xb") as file:
            file.write(jpeg)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, directory / filename)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return filename


def remove_avatar(directory: Path, filename: str | None) -> None:
    """Delete a stored avatar if it exists; a None name and a missing file are ignored.

    A name store_avatar cannot have produced (such as "../etc/passwd") is never touched: it
    is logged and left alone, because this runs after a commit and must not fail the request.
    """
    if filename is None:
        return
    if not _STORED_NAME.fullmatch(filename):
        logger.warning("Not removing %r: not a stored avatar name", filename)
        return
    (directory / filename).unlink(missing_ok=True)


_TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{32}\.tmp")


def remove_orphans(directory: Path, referenced: set[str], grace_seconds: float) -> list[str]:
    """Delete pictures no user points at and temporary files, left by a crash between
    writing a file and committing (or between committing and removing the old picture).

    Files younger than `grace_seconds` are spared: another worker process may be between
    its rename and its commit right now. Returns the names removed.
    """
    if not directory.is_dir():
        return []
    cutoff = time.time() - grace_seconds
    removed = []
    for path in directory.iterdir():
        is_ours = _STORED_NAME.fullmatch(path.name) or _TEMPORARY_NAME.fullmatch(path.name)
        if is_ours and path.name not in referenced and _modified_before(path, cutoff):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _modified_before(path: Path, cutoff: float) -> bool:
    # Another worker starting at the same moment may have removed it already.
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False
