"""Pictures: validate an upload, normalise it to a square JPEG avatar or to the few widths of
a post image, store and delete avatars.

Uploaded bytes are hostile until Pillow has decoded them. They are identified by content (never
by file name or declared content type), refused before decoding if they declare too many pixels
or would need too much memory to decode, and re-encoded from pixels only, so nothing from the
original file (scripts, polyglots, EXIF with GPS positions, comments) reaches the stored avatar.

Memory is what a picture costs a worker: a few kilobytes of PNG can declare millions of pixels.
So the decoder's memory is estimated from the header and capped (MAX_DECODE_BYTES), everything
after decoding works on strips of the central square that are reduced straight away, so no copy
or mode conversion of the full picture is ever made, and a process decodes one picture at a time
(MAX_CONCURRENT_DECODES): the worst case per worker is one capped decode, whatever the traffic.
"""

import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, JpegImagePlugin, PngImagePlugin

from services.errors import BusyError

MAX_PICTURE_BYTES: int = 4 * 1024 * 1024
AVATAR_SIZE: int = 300
# The widths a post image is stored at (srcset candidates); none is wider than the upload.
POST_IMAGE_WIDTHS: tuple[int, ...] = (480, 960, 1600)
# The largest stored copy has at most this many pixels as well, so that a very tall picture
# costs no more to keep, send and reduce than a 1600 x 1200 one.
MAX_POST_IMAGE_PIXELS: int = 1600 * 1200
# Far below Pillow's own MAX_IMAGE_PIXELS (~89 Mpx). 16 Mpx (4608x3456) is beyond a 12 Mpx
# phone photo, and bigger photos hardly fit in MAX_PICTURE_BYTES anyway. JPEGs are decoded at
# 1/2 to 1/8 scale, but PNG, GIF, WebP and progressive JPEG always at full size.
MAX_PIXELS: int = 16_000_000
# What one decode may allocate, estimated from the header (see _decode_bytes). With one decode
# at a time this is most of what an upload adds to a worker (~108 MB at rest, 150 MB target). It
# admits any baseline JPEG up to MAX_PIXELS, palette and greyscale PNG or GIF up to MAX_PIXELS,
# RGB(A) PNG up to 8 Mpx, progressive JPEG up to ~10 Mpx (4:2:0) and WebP up to ~1.8 Mpx.
MAX_DECODE_BYTES: int = 32 * 1024 * 1024
# PNG text chunks are inflated and kept while Image.open reads the header, before any check
# here: Pillow allows 64 MB of them, which a 64 KB upload of zTXt chunks reaches. Avatars drop
# the text anyway, and real pictures carry far less (an editor's XMP packet is a few KB).
MAX_PNG_TEXT_BYTES: int = 1024 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = MAX_PNG_TEXT_BYTES
# Decodes at the same time in one process; routes run in a thread pool, so without this every
# concurrent upload would hold its own decoded picture.
MAX_CONCURRENT_DECODES: int = 1
# How long an upload waits for its turn before it is refused as busy.
DECODE_WAIT_SECONDS: float = 5.0
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

NOT_A_PICTURE = "Upload a JPEG, PNG, WebP or GIF image."
DAMAGED_PICTURE = "That image is damaged or incomplete. Upload a JPEG, PNG, WebP or GIF image."
TOO_MANY_PIXELS = (
    f"That image is too large in pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels."
)
TOO_MUCH_MEMORY = "That image is too large to process; upload a smaller picture, or a JPEG."
BUSY = "Too many pictures are being processed right now; try again in a moment."

_CHUNK_BYTES = 64 * 1024
# Strips are converted and reduced one at a time; this many pixels (4 bytes each) per strip.
_STRIP_PIXELS = 256 * 1024
# Measured with Pillow 13: libwebp's canvas, the copy handed to Python and the image itself.
_WEBP_BYTES_PER_PIXEL = 18
_JPEG_QUALITY = 85
_WHITE = (255, 255, 255)
# The names avatars are stored under (services.users): the orphan sweep touches nothing else.
STORED_AVATAR_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
# Decoding errors Pillow raises for corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class PictureError(ValueError):
    """The upload is not an acceptable picture; str(exc) is a clear message for the user."""


class PictureTooLarge(PictureError):  # noqa: N818 -- the name is part of the public interface
    """The upload is bigger than the byte limit."""


class PictureBusy(BusyError):  # noqa: N818 -- named like PictureTooLarge
    """Other uploads are being decoded and this one waited DECODE_WAIT_SECONDS for its turn."""


_decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


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
    for anything that is not an acceptable picture, PictureBusy when other decodes held this
    process's slot for too long.
    """
    # JPEG can decode at 1/2, 1/4 or 1/8 scale, which saves most of the memory and time for
    # camera photos; keep at least twice the avatar size so LANCZOS has detail to work with.
    with _decode_slot(), _decode_first_frame(data, lambda _: (2 * AVATAR_SIZE,) * 2) as picture:
        orientation = _orientation(picture)
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        factor = max(1, side // (2 * AVATAR_SIZE))
        square = _reduced(picture, (left, top, left + side, top + side), factor)
    with (
        square,
        _upright(square, orientation) as upright,
        upright.resize((AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS) as avatar,
    ):
        return _encode_jpeg(avatar)


@dataclass(frozen=True)
class Variant:
    """One stored width of a post image."""

    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True)
class PostImage:
    """A post image as stored: the same picture at each of its widths, narrowest first."""

    variants: tuple[Variant, ...]

    @property
    def width(self) -> int:
        return self.variants[-1].width

    @property
    def height(self) -> int:
        return self.variants[-1].height


def largest_size(width: int, height: int) -> tuple[int, int]:
    """The size of the widest stored copy of a picture shown `width` x `height`: the same
    aspect ratio, never larger than the upload, at most 1600 wide and MAX_POST_IMAGE_PIXELS."""
    scale = min(
        1.0, POST_IMAGE_WIDTHS[-1] / width, math.sqrt(MAX_POST_IMAGE_PIXELS / (width * height))
    )
    if scale == 1.0:
        return width, height
    # Rounded down, so the result is within both limits and maps to itself (the renderer
    # recognises a stored size by exactly that).
    return max(1, math.floor(width * scale + 1e-9)), max(1, math.floor(height * scale + 1e-9))


def variant_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """Every stored size of a post image whose widest copy is `width` x `height`, narrowest
    first. The Markdown renderer derives its srcset from the same rule, so it must stay pure."""
    widths = [candidate for candidate in POST_IMAGE_WIDTHS if candidate < width] + [width]
    return [(w, max(1, round(height * w / width))) for w in widths]


def make_post_image(data: bytes) -> PostImage:
    """Validate and normalise an uploaded post image: upright, metadata stripped, its aspect
    ratio kept, re-encoded as JPEG at each of variant_sizes. Raises like make_avatar."""
    with _decode_slot(), _decode_first_frame(data, _stored_target) as picture:
        orientation = _orientation(picture)
        target = _stored_target(picture)
        factor = max(1, min(picture.width // target[0], picture.height // target[1]))
        reduced = _reduced(picture, (0, 0, *picture.size), factor)
    with reduced, _upright(reduced, orientation) as upright:
        sizes = variant_sizes(*largest_size(*upright.size))
        return PostImage(tuple(_variant(upright, size) for size in sizes))


def _stored_target(picture: Image.Image) -> tuple[int, int]:
    """largest_size for the picture as shown, turned back to the way its pixels are stored
    (EXIF orientations 5 to 8 swap width and height)."""
    swapped = _orientation(picture) in (5, 6, 7, 8)
    width, height = picture.size[::-1] if swapped else picture.size
    target = largest_size(width, height)
    return target[::-1] if swapped else target


def _variant(picture: Image.Image, size: tuple[int, int]) -> Variant:
    if picture.size == size:
        return Variant(*size, _encode_jpeg(picture.copy()))
    with picture.resize(size, Image.Resampling.LANCZOS) as resized:
        return Variant(*size, _encode_jpeg(resized))


@contextmanager
def _decode_slot() -> Iterator[None]:
    if not _decode_slots.acquire(timeout=DECODE_WAIT_SECONDS):
        raise PictureBusy(BUSY)
    try:
        yield
    finally:
        _decode_slots.release()


@contextmanager
def _decode_first_frame(
    data: bytes, draft_size: Callable[[Image.Image], tuple[int, int]]
) -> Iterator[Image.Image]:
    """Open the upload, refuse pixel and memory bombs from the header alone, then decode the
    first frame (a JPEG at the smallest scale still at least `draft_size` of the header)."""
    with _open(data) as picture:
        _check_pixel_count(picture)
        declared = picture.size
        picture.draft(None, draft_size(picture))
        if _decode_bytes(picture, declared, data) > MAX_DECODE_BYTES:
            raise PictureError(TOO_MUCH_MEMORY)
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


def _decode_bytes(picture: Image.Image, declared: tuple[int, int], data: bytes) -> int:
    """What decoding will allocate, from the header: the decoded frame at the size and in the
    mode the decoder produces, plus what the decoder itself holds at full size."""
    width, height = declared
    if picture.format == "WEBP":
        return width * height * _WEBP_BYTES_PER_PIXEL
    decoded = picture.width * picture.height * _bytes_per_pixel(picture.mode)
    is_jpeg = isinstance(picture, JpegImagePlugin.JpegImageFile)  # MPO included
    if is_jpeg and _jpeg_has_several_scans(picture, data):
        # libjpeg then keeps every DCT coefficient (2 bytes) of every component until the
        # last scan, whatever the scale it outputs at; subsampled components have fewer.
        decoded += int(width * height * _jpeg_samples_per_pixel(picture) * 2)
    return decoded


def _jpeg_samples_per_pixel(picture: Image.Image) -> float:
    """Samples a pixel over all components: 3 for 4:4:4 colour, 1.5 for 4:2:0, 1 for grey."""
    # Pillow's JPEG header reader lists (id, horizontal, vertical, table) per component.
    sampling = [(h, v) for _, h, v, _ in getattr(picture, "layer", [])]
    if not sampling or min(min(h, v) for h, v in sampling) < 1:
        return 4.0  # the most a JPEG can have (CMYK at full resolution)
    full = max(h for h, _ in sampling) * max(v for _, v in sampling)
    return sum(h * v for h, v in sampling) / full


def _bytes_per_pixel(mode: str) -> int:
    """Pillow's storage: one byte for 1, L and P, two for I;16, four for everything else (RGB
    included, which is stored padded)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _jpeg_has_several_scans(picture: Image.Image, data: bytes) -> bool:
    """Progressive, or baseline with a first scan that does not carry every component; either
    way libjpeg buffers the whole picture's coefficients. Unreadable headers count as several."""
    if picture.info.get("progressive"):
        return True
    position = 2  # after SOI
    while position + 4 < len(data):
        if data[position] != 0xFF:
            return True
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0xDA:  # start of scan: its first byte is the number of components
            return data[position + 4] < getattr(picture, "layers", 0)
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return True


def _orientation(picture: Image.Image) -> int:
    """The EXIF (or XMP) orientation, which phones set instead of rotating the pixels."""
    try:
        orientation = picture.getexif().get(ExifTags.Base.Orientation)
    except _DECODE_ERRORS as exc:  # a corrupt EXIF block
        raise PictureError(DAMAGED_PICTURE) from exc
    return orientation if isinstance(orientation, int) else 1  # a crafted tag may be anything


# As in ImageOps.exif_transpose, which cannot be used here: the pixels it would transpose are a
# reduced copy that no longer carries the upload's EXIF.
_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(picture: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSITIONS.get(orientation)
    return picture.copy() if method is None else picture.transpose(method)


def _reduced(picture: Image.Image, box: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The `box` of the picture as RGB, reduced by a whole `factor`.

    It is converted and reduced a strip of rows at a time, so that no full-size copy or
    conversion (RGBA of a palette picture, 4 bytes a pixel) exists next to the decoded picture.
    Strips are a multiple of the factor high, so the box filter sees the same pixels as on the
    whole box.
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    rows = max(1, _STRIP_PIXELS // width // factor) * factor
    transparent = picture.has_transparency_data
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)), _WHITE)
    for y in range(0, height, rows):
        strip_box = (left, top + y, right, top + min(y + rows, height))
        with (
            picture.crop(strip_box) as strip,
            _to_rgb(strip, transparent) as rgb,
            rgb.reduce(factor) as smaller,
        ):
            reduced.paste(smaller, (0, y // factor))
    return reduced


def _to_rgb(picture: Image.Image, transparent: bool) -> Image.Image:
    """Convert to RGB, the only mode JPEG and every browser handle alike."""
    if transparent:
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


_TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{32}\.tmp")


def remove_orphans(
    directory: Path,
    referenced: set[str],
    grace_seconds: float,
    stored: re.Pattern = STORED_AVATAR_NAME,
) -> list[str]:
    """Delete stored files (names matching `stored`, avatars by default) that no row points at,
    and temporary files, left by a crash between writing a file and committing (or between
    committing and removing the old file).

    Files younger than `grace_seconds` are spared: another worker process may be between
    its rename and its commit right now. Returns the names removed.
    """
    if not directory.is_dir():
        return []
    cutoff = time.time() - grace_seconds
    removed = []
    for path in directory.iterdir():
        is_ours = stored.fullmatch(path.name) or _TEMPORARY_NAME.fullmatch(path.name)
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
