"""uploads.make_avatar's memory: bounded before decoding, never a full-size conversion, one
decode at a time per process.

Peak memory is read in a fresh interpreter that only imports services.media and processes one
picture, so nothing else the test process did can hide or inflate the peak. It is the kernel's
high-water mark of resident memory (VmHWM) rather than getrusage's ru_maxrss: on Linux a
child's ru_maxrss starts at its parent's resident size at the fork, which is the whole test
process here.
"""

import subprocess
import sys
import textwrap
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from PIL.PngImagePlugin import PngInfo

from services import media as uploads
from services.errors import BusyError
from services.media import AVATAR_SIZE, PictureError, make_avatar

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, image_format: str, **params) -> bytes:
    output = BytesIO()
    image.save(output, image_format, **params)
    return output.getvalue()


def palette_picture(side: int) -> bytes:
    """The reported upload: a flat palette PNG with a transparent index, a few KB for millions
    of pixels. A full 256-colour palette keeps it at 8 bits a pixel, as in the report."""
    image = Image.new("P", (side, side), 0)
    image.putpalette(list(range(256)) * 3)
    return encode(image, "PNG", transparency=0)


STATUS = Path("/proc/self/status")
PEAK_RSS = textwrap.dedent(
    """
    import re, sys
    from services import media as uploads

    def peak():
        status = open("/proc/self/status").read()
        return int(re.search(r"^VmHWM:\\s+(\\d+) kB", status, re.MULTILINE).group(1)) * 1024

    data = open(sys.argv[1], "rb").read()
    before = peak()
    try:
        result = "avatar %d" % len(uploads.make_avatar(data))
    except uploads.PictureError as exc:
        result = "refused: %s" % exc
    print(peak() - before, result)
    """
)
needs_proc = pytest.mark.skipif(not STATUS.exists(), reason="reads VmHWM from /proc")


def peak_growth(data: bytes, tmp_path: Path) -> tuple[int, str]:
    """Bytes the peak RSS of a fresh process grows by while make_avatar handles `data`."""
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    completed = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    growth, result = completed.stdout.strip().split(" ", 1)
    return int(growth), result


def test_the_reported_palette_picture_is_small_but_huge() -> None:
    data = palette_picture(5000)
    assert 20_000 < len(data) < 30_000  # the report's 24 KB
    with Image.open(BytesIO(data)) as image:
        assert image.size == (5000, 5000)
        assert image.mode == "P"
        assert "transparency" in image.info


@needs_proc
def test_the_reported_palette_picture_costs_no_memory(tmp_path: Path) -> None:
    """It took a worker from 108 to 337 MB; 25 Mpx is now over the limit and refused unread."""
    growth, result = peak_growth(palette_picture(5000), tmp_path)
    assert result == f"refused: {uploads.TOO_MANY_PIXELS}"
    assert growth < 30 * MB, growth / MB


@needs_proc
def test_the_largest_palette_picture_accepted_costs_little_more_than_its_pixels(
    tmp_path: Path,
) -> None:
    """16 Mpx at one byte a pixel: the old pipeline added an RGBA and an RGB copy (137 MB)."""
    growth, result = peak_growth(palette_picture(4000), tmp_path)
    assert result.startswith("avatar")
    assert growth < 30 * MB, growth / MB


@needs_proc
@pytest.mark.parametrize(
    "data",
    [
        # Each the largest of its kind that is accepted: its decode is within MAX_DECODE_BYTES.
        pytest.param(palette_picture(4000), id="palette-png-16mpx-transparent"),
        pytest.param(encode(Image.new("RGBA", (2800, 2800), (*RED, 0)), "PNG"), id="rgba-png"),
        pytest.param(encode(Image.new("LA", (2800, 2800), (9, 0)), "PNG"), id="la-png"),
        pytest.param(encode(Image.new("I;16", (4000, 4000), 0x8000), "PNG"), id="16-bit-grey-png"),
        pytest.param(
            encode(Image.new("RGB", (3000, 3000), BLUE), "JPEG", progressive=True),
            id="progressive-jpeg",
        ),
        pytest.param(
            encode(Image.new("RGBA", (1300, 1300), (*BLUE, 0)), "WEBP", lossless=True),
            id="webp",
        ),
    ],
)
def test_accepted_pictures_stay_within_the_decode_budget(data: bytes, tmp_path: Path) -> None:
    """The decode itself is all the memory a picture costs: no full-size copy or conversion
    (the old pipeline made up to five) is made next to it."""
    growth, result = peak_growth(data, tmp_path)
    assert result.startswith("avatar")
    # Beside the decode: the interpreter's own allocations, one strip and the reduced square
    # with its copies (7 MB at most between them as measured).
    assert growth < uploads.MAX_DECODE_BYTES + 12 * MB, growth / MB


def png_with_text(chunks: int, text_bytes: int) -> bytes:
    """A small PNG with zTXt chunks that each inflate to `text_bytes`."""
    text = PngInfo()
    for number in range(chunks):
        text.add_text(f"k{number}", "a" * text_bytes, zip=True)
    return encode(Image.new("RGB", (10, 10), RED), "PNG", pnginfo=text)


@needs_proc
def test_png_text_chunks_cannot_inflate_into_memory(tmp_path: Path) -> None:
    # 60 KB of zTXt inflating to 60 MB, all of it read by Image.open before any other check.
    data = png_with_text(60, 1024 * 1024 - 1)
    assert len(data) < 100_000
    growth, result = peak_growth(data, tmp_path)
    assert result == f"refused: {uploads.NOT_A_PICTURE}"
    assert growth < 2 * uploads.MAX_PNG_TEXT_BYTES + 4 * MB, growth / MB


def test_ordinary_png_text_is_still_accepted() -> None:
    assert make_avatar(png_with_text(4, 64 * 1024)).startswith(b"\xff\xd8")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: Image.Image) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(Image.new("RGBA", (3000, 3000)), "PNG"), id="rgba-png-9mpx"),
        pytest.param(encode(Image.new("RGB", (3000, 3000)), "PNG"), id="rgb-png-9mpx"),
        pytest.param(
            encode(Image.new("RGB", (4000, 3000)), "JPEG", progressive=True),
            id="progressive-jpeg-12mpx",
        ),
        pytest.param(
            encode(Image.new("RGB", (2400, 2400)), "JPEG", progressive=True, subsampling=0),
            id="progressive-jpeg-444",
        ),
        pytest.param(encode(Image.new("RGB", (2000, 2000)), "WEBP"), id="webp-4mpx"),
    ],
)
def test_pictures_needing_too_much_memory_are_refused_without_decoding(data: bytes) -> None:
    with pytest.raises(PictureError) as refused:
        make_avatar(data)
    assert str(refused.value) == uploads.TOO_MUCH_MEMORY


def test_baseline_jpeg_up_to_the_pixel_limit_is_decoded_reduced() -> None:
    # 16 Mpx at full size is 64 MB; JPEG decodes at 1/4 scale here, 4 MB.
    data = encode(Image.new("RGB", (4000, 4000), BLUE), "JPEG")
    with Image.open(BytesIO(data)) as image:
        assert not uploads._jpeg_has_several_scans(image, data)
        image.draft(None, (2 * AVATAR_SIZE, 2 * AVATAR_SIZE))
        assert uploads._decode_bytes(image, (4000, 4000), data) == 1000 * 1000 * 4
    with Image.open(BytesIO(make_avatar(data))) as avatar:
        assert avatar.size == (AVATAR_SIZE, AVATAR_SIZE)


def test_a_baseline_jpeg_scanned_one_component_at_a_time_counts_as_buffered() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64)), "JPEG"))
    start_of_scan = data.index(b"\xff\xda")
    assert data[start_of_scan + 4] == 3  # all three components in the first scan
    with Image.open(BytesIO(bytes(data))) as image:
        assert not uploads._jpeg_has_several_scans(image, bytes(data))
    data[start_of_scan + 4] = 1
    with Image.open(BytesIO(bytes(data))) as image:
        assert uploads._jpeg_has_several_scans(image, bytes(data))


# --- the pixels come out as before -------------------------------------------------------------


def test_strips_reduce_exactly_like_the_whole_square() -> None:
    image = Image.radial_gradient("L").resize((1900, 1500)).convert("RGB")
    factor = 1500 // (2 * AVATAR_SIZE)
    assert factor == 2
    square = uploads._reduced(image, (200, 0, 1700, 1500), factor)
    assert square.tobytes() == image.crop((200, 0, 1700, 1500)).reduce(factor).tobytes()


def test_large_transparent_palette_picture_is_flattened_onto_white() -> None:
    image = Image.new("P", (2500, 1800), 0)
    image.putpalette([*RED, *BLUE])
    image.paste(1, (850, 500, 1650, 1300))
    with Image.open(BytesIO(make_avatar(encode(image, "PNG", transparency=0)))) as avatar:
        assert_near(avatar.getpixel((3, 3)), WHITE)
        assert_near(avatar.getpixel((150, 150)), BLUE)


def test_large_png_is_centre_cropped_and_oriented() -> None:
    # Stored 3000x1300, the centre square's left half red; Orientation 6 puts it on top.
    image = Image.new("RGB", (3000, 1300), BLUE)
    image.paste(RED, (850, 0, 1500, 1300))
    exif = image.getexif()
    exif[0x0112] = 6
    with Image.open(BytesIO(make_avatar(encode(image, "PNG", exif=exif)))) as avatar:
        assert_near(avatar.getpixel((150, 30)), RED)
        assert_near(avatar.getpixel((150, 270)), BLUE)


def assert_near(pixel: tuple[int, ...], expected: tuple[int, int, int]) -> None:
    assert all(abs(a - b) <= 40 for a, b in zip(pixel, expected, strict=True)), pixel


# --- one decode at a time ----------------------------------------------------------------------


def test_concurrent_uploads_decode_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    active, most = 0, 0
    load = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> object:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.05)  # long enough for unbounded threads to overlap
            return load(self)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    data = encode(Image.new("RGB", (200, 200), RED), "PNG")
    start = threading.Barrier(6)
    results: list[bytes | BaseException] = []

    def upload() -> None:
        start.wait()
        try:
            results.append(make_avatar(data))
        except BaseException as exc:  # reported below rather than lost in the thread
            results.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [type(result) for result in results] == [bytes] * 6
    assert most <= uploads.MAX_CONCURRENT_DECODES


def test_an_upload_that_waits_too_long_is_refused_as_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uploads, "DECODE_WAIT_SECONDS", 0.01)
    data = encode(Image.new("RGB", (50, 50), RED), "PNG")
    held = [uploads._decode_slots.acquire() for _ in range(uploads.MAX_CONCURRENT_DECODES)]
    try:
        assert all(held)
        with pytest.raises(uploads.PictureBusy, match="try again"):
            make_avatar(data)
    finally:
        for _ in held:
            uploads._decode_slots.release()
    assert make_avatar(data).startswith(b"\xff\xd8")
    # Not a bad picture: a full server, answered 503 with Retry-After.
    assert issubclass(uploads.PictureBusy, BusyError)
    assert not issubclass(uploads.PictureBusy, PictureError)
