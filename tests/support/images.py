"""Image files built in memory for upload tests."""

import io
import random

from PIL import Image


def png_bytes(
    size: tuple[int, int] = (400, 250), color: tuple[int, int, int] = (200, 40, 40)
) -> bytes:
    """A real PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def varied_png(seed: str) -> bytes:
    """A real PNG, different for every seed."""
    rng = random.Random(seed)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    image = Image.new("RGB", (480, 360), colour)
    for _ in range(20):
        x, y = rng.randrange(470), rng.randrange(350)
        image.paste((rng.randrange(256), 0, 0), (x, y, x + 10, y + 10))
    output = io.BytesIO()
    image.save(output, "PNG")
    return output.getvalue()


def bomb_png() -> bytes:
    """A small file that declares 20,000 x 20,000 pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")
    return buffer.getvalue()
