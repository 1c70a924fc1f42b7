"""Unit tests for services/media.py; every picture is generated here with Pillow or by hand."""

import os
import re
import struct
import time
import warnings
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from PIL.PngImagePlugin import PngInfo

from services import media as uploads
from services.media import (
    AVATAR_SIZE,
    MAX_PICTURE_BYTES,
    PictureError,
    PictureTooLarge,
    make_avatar,
    read_limited,
)
from services.storage import LocalStorage

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
WHITE = (255, 255, 255)
STORED_NAME = re.compile(r"[0-9a-f]{32}\.jpg")


def encode(image: Image.Image, image_format: str, **params) -> bytes:
    output = BytesIO()
    image.save(output, image_format, **params)
    return output.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


def assert_avatar(data: bytes) -> None:
    assert data.startswith(b"\xff\xd8\xff")
    with decode(data) as image:
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert image.size == (AVATAR_SIZE, AVATAR_SIZE)


def assert_near(
    pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40
) -> None:
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


def photo(size: tuple[int, int] = (400, 320)) -> Image.Image:
    """Something with detail, so that the encoders cannot cheat with flat colour."""
    return Image.radial_gradient("L").resize(size).convert("RGB")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A small, well-formed 1-bit PNG header that declares a huge size (its data is a stub)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if any pixel data is decompressed."""

    def load(self: Image.Image) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# --- accepted pictures -------------------------------------------------------------------------


def animated_gif() -> bytes:
    frames = [Image.new("P", (120, 80), 0) for _ in range(3)]
    for frame, colour in zip(frames, (RED, BLUE, GREEN), strict=True):
        frame.putpalette([*colour, *WHITE])
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(photo(), "JPEG"), id="jpeg"),
        pytest.param(encode(photo().convert("RGBA"), "PNG"), id="png-rgba"),
        pytest.param(encode(photo().convert("P"), "PNG"), id="png-palette"),
        pytest.param(encode(photo().convert("L"), "PNG"), id="png-grey"),
        pytest.param(encode(photo().convert("1"), "PNG"), id="png-1bit"),
        pytest.param(encode(photo(), "WEBP"), id="webp"),
        pytest.param(encode(photo().convert("CMYK"), "JPEG"), id="jpeg-cmyk"),
        pytest.param(encode(photo((40, 30)), "PNG"), id="small-is-upscaled"),
        pytest.param(animated_gif(), id="animated-gif"),
    ],
)
def test_accepted_pictures_become_square_jpegs(data: bytes) -> None:
    assert_avatar(make_avatar(data))


def test_animated_gif_uses_its_first_frame() -> None:
    with decode(make_avatar(animated_gif())) as avatar:
        assert_near(avatar.getpixel((150, 150)), RED)


def test_animated_webp_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (120, 80), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)
    with decode(make_avatar(data)) as avatar:
        assert_near(avatar.getpixel((150, 150)), RED)


def test_sixteen_bit_greyscale_keeps_its_tones() -> None:
    # A naive conversion clips every 16-bit value above 255 to white.
    data = encode(Image.new("I;16", (50, 50), 0x8000), "PNG")
    with decode(make_avatar(data)) as avatar:
        assert_near(avatar.getpixel((150, 150)), (128, 128, 128), tolerance=8)


def transparent_red(mode: str) -> Image.Image:
    """Fully transparent except a centre square, with red hidden under the transparent part."""
    if mode == "P":  # palette index 0 (red) is the transparent one
        image = Image.new("P", (200, 200), 0)
        image.putpalette([*RED, *BLUE])
        image.paste(1, (50, 50, 150, 150))
        return image
    image = Image.new("RGBA", (200, 200), (*RED, 0))
    image.paste((*BLUE, 255), (50, 50, 150, 150))
    return image if mode == "RGBA" else image.convert(mode)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(transparent_red("RGBA"), "PNG"), id="png-rgba"),
        pytest.param(encode(transparent_red("RGBA"), "WEBP", lossless=True), id="webp-rgba"),
        pytest.param(encode(transparent_red("RGBA").convert("P"), "PNG"), id="png-palette"),
        pytest.param(encode(transparent_red("P"), "GIF", transparency=0), id="gif"),
    ],
)
def test_transparency_is_flattened_onto_white(data: bytes) -> None:
    with decode(make_avatar(data)) as avatar:
        assert_near(avatar.getpixel((5, 5)), WHITE)
        assert_near(avatar.getpixel((150, 150)), BLUE)


@pytest.mark.parametrize(
    ("image_format", "size"),
    [("PNG", (600, 300)), ("PNG", (300, 600)), ("JPEG", (2400, 1200))],
)
def test_non_square_pictures_are_centre_cropped(image_format: str, size: tuple[int, int]) -> None:
    # The centre square is red and the rest blue: squashing or an off-centre crop shows blue.
    width, height = size
    side = min(size)
    image = Image.new("RGB", size, BLUE)
    left, top = (width - side) // 2, (height - side) // 2
    image.paste(RED, (left, top, left + side, top + side))
    with decode(make_avatar(encode(image, image_format))) as avatar:
        for point in [(150, 150), (3, 150), (296, 150), (150, 3), (150, 296)]:
            assert_near(avatar.getpixel(point), RED)


def test_exif_orientation_is_applied() -> None:
    # Stored 200x100 with the left half red; Orientation 6 means "rotate 90 degrees clockwise to
    # display", which puts the left half on top. Unrotated, the crop would be red on the left.
    image = Image.new("RGB", (200, 100), BLUE)
    image.paste(RED, (0, 0, 100, 100))
    exif = image.getexif()
    exif[0x0112] = 6
    with decode(make_avatar(encode(image, "JPEG", exif=exif))) as avatar:
        assert_near(avatar.getpixel((270, 30)), RED)
        assert_near(avatar.getpixel((30, 270)), BLUE)


def test_metadata_is_stripped() -> None:
    image = photo()
    exif = image.getexif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 1  # Orientation
    data = encode(image, "JPEG", exif=exif, comment=b"secret comment", icc_profile=b"fake-icc")
    avatar = make_avatar(data)
    for marker in (b"Exif", b"SpyCam", b"secret comment", b"fake-icc"):
        assert marker not in avatar
    with decode(avatar) as decoded:
        assert not decoded.getexif()
        assert not {"exif", "comment", "icc_profile"} & decoded.info.keys()


def test_png_text_chunks_are_dropped() -> None:
    text = PngInfo()
    text.add_text("Comment", "secret text")
    data = encode(photo(), "PNG", pnginfo=text)
    assert b"secret text" in data
    assert b"secret text" not in make_avatar(data)


# --- refused uploads ---------------------------------------------------------------------------

PNG_HEADER = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Just some text, not a picture.\n", id="text"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b"<script>alert(1)</script></svg>",
            id="svg",
        ),
        pytest.param(b"<!DOCTYPE html><html><script>alert(1)</script></html>", id="html"),
        pytest.param(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", id="pdf"),
        pytest.param(PNG_HEADER + b"<html><script>alert(1)</script></html>", id="png-then-html"),
        pytest.param(encode(photo(), "BMP"), id="bmp-is-not-accepted"),
        pytest.param(encode(photo(), "TIFF"), id="tiff-is-not-accepted"),
        pytest.param(encode(photo(), "JPEG")[:400], id="truncated-jpeg"),
        pytest.param(encode(photo(), "PNG")[:-200], id="truncated-png"),
    ],
)
def test_non_pictures_are_refused(data: bytes) -> None:
    with pytest.raises(PictureError) as refused:
        make_avatar(data)
    assert str(refused.value) in (uploads.NOT_A_PICTURE, uploads.DAMAGED_PICTURE)


def test_refusal_messages_are_for_users() -> None:
    with pytest.raises(PictureError, match=r"^Upload a JPEG, PNG, WebP or GIF image\.$"):
        make_avatar(b"plain text")


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(6000, 6000, id="over-our-limit"),
        pytest.param(10_000, 10_000, id="pillow-warns"),
        pytest.param(20_000, 20_000, id="pillow-errors"),
        pytest.param(2**31 - 1, 2, id="absurd-width"),
    ],
)
def test_pixel_bombs_are_refused_without_decoding(width: int, height: int) -> None:
    with pytest.raises(PictureError, match="too large in pixels"):
        make_avatar(png_declaring(width, height))


def test_exactly_max_pixels_is_allowed_past_the_size_check(monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_PIXELS", 400 * 320)
    assert_avatar(make_avatar(encode(photo((400, 320)), "PNG")))
    monkeypatch.setattr(uploads, "MAX_PIXELS", 400 * 320 - 1)
    with pytest.raises(PictureError, match="too large in pixels"):
        make_avatar(encode(photo((400, 320)), "PNG"))


@pytest.mark.usefixtures("no_decoding")
def test_pillow_bomb_warning_stops_work_even_when_warnings_are_ignored(monkeypatch) -> None:
    # Take our own limit out of the way: Pillow's guard only warns at 10000x10000.
    monkeypatch.setattr(uploads, "MAX_PIXELS", 10**12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PictureError, match="too large in pixels"):
            make_avatar(png_declaring(10_000, 10_000))


# --- read_limited ------------------------------------------------------------------------------


class EndlessStream:
    """A client that never stops sending, whatever it declared; records each read size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.sizes.append(size)
        return b"x" * (size if size > 0 else 10 * MAX_PICTURE_BYTES)


def test_read_limited_returns_data_exactly_at_the_limit() -> None:
    data = os.urandom(MAX_PICTURE_BYTES)
    assert read_limited(BytesIO(data)) == data


def test_read_limited_refuses_one_byte_over_the_limit() -> None:
    with pytest.raises(PictureTooLarge, match="too big; the limit is 4 MB"):
        read_limited(BytesIO(b"x" * (MAX_PICTURE_BYTES + 1)))


def test_read_limited_honours_a_custom_limit() -> None:
    assert read_limited(BytesIO(b"0123456789"), limit=10) == b"0123456789"
    with pytest.raises(PictureTooLarge, match="10 bytes"):
        read_limited(BytesIO(b"0123456789A"), limit=10)


def test_read_limited_stops_reading_an_endless_stream_in_chunks() -> None:
    stream = EndlessStream()
    with pytest.raises(PictureTooLarge):
        read_limited(stream)  # type: ignore[arg-type]
    assert all(0 < size <= 64 * 1024 for size in stream.sizes)
    assert sum(stream.sizes) == MAX_PICTURE_BYTES + 1


def test_picture_too_large_is_a_picture_error() -> None:
    assert issubclass(PictureTooLarge, PictureError)
    assert issubclass(PictureError, ValueError)


# --- local storage of avatars -----------------------------------------------------------------

AVATAR = "profile_pics/" + "a" * 32 + ".jpg"


def test_local_storage_writes_the_file_whole(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")  # does not exist yet
    jpeg = make_avatar(encode(photo(), "PNG"))
    assert storage.save(None, AVATAR, jpeg, owner_id=None)  # type: ignore[arg-type]
    assert not storage.save(None, AVATAR, jpeg, owner_id=None)  # type: ignore[arg-type]
    assert (tmp_path / "media" / AVATAR).read_bytes() == jpeg
    assert [path.name for path in (tmp_path / "media" / "profile_pics").iterdir()] == [
        "a" * 32 + ".jpg"
    ]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_local_storage_leaves_nothing_behind_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        LocalStorage(tmp_path).save(None, AVATAR, b"\xff\xd8\xff data", owner_id=None)  # type: ignore[arg-type]
    assert list((tmp_path / "profile_pics").iterdir()) == []


def test_local_storage_release_deletes_the_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.save(None, AVATAR, b"jpeg", owner_id=None)  # type: ignore[arg-type]
    storage.release([AVATAR, "profile_pics/" + "0" * 32 + ".jpg"])  # a missing one is ignored
    assert not (tmp_path / AVATAR).exists()


@pytest.mark.parametrize(
    "name",
    [
        "../outside.jpg",
        "profile_pics/../" + "a" * 32 + ".jpg",
        "../../etc/passwd",
        "profile_pics/sub/" + "a" * 32 + ".jpg",
        "profile_pics/" + "A" * 32 + ".jpg",
        "profile_pics/" + "a" * 32 + ".jpg\n",
        "profile_pics/notes.txt",
        "/etc/passwd.jpg",
        "",
    ],
)
def test_local_storage_refuses_other_names(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "media" / "profile_pics"
    (directory / "sub").mkdir(parents=True)
    precious = [
        tmp_path / "outside.jpg",
        tmp_path / "media" / ("a" * 32 + ".jpg"),
        directory / "sub" / ("a" * 32 + ".jpg"),
        directory / ("A" * 32 + ".jpg"),
        directory / "notes.txt",
    ]
    for path in precious:
        path.write_bytes(b"keep me")
    storage = LocalStorage(tmp_path / "media")
    storage.release([name])
    assert all(path.exists() for path in precious)
    with pytest.raises(ValueError, match="not a stored media name"):
        storage.save(None, name, b"x", owner_id=None)  # type: ignore[arg-type]
    assert storage.read(None, name) is None  # type: ignore[arg-type]


def test_remove_orphans_spares_referenced_young_and_foreign_files(tmp_path: Path) -> None:
    from services.media import remove_orphans

    kept, orphan, young = ("a" * 32 + ".jpg", "b" * 32 + ".jpg", "c" * 32 + ".jpg")
    temporary, foreign = ("." + "d" * 32 + ".tmp", "notes.txt")
    for name in (kept, orphan, young, temporary, foreign):
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 3600
    for name in (kept, orphan, temporary, foreign):
        os.utime(tmp_path / name, (old, old))
    removed = remove_orphans(tmp_path, {kept}, grace_seconds=60)
    assert sorted(removed) == sorted([orphan, temporary])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept, young, foreign])
