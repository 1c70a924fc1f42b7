"""Zip archives and sample accounts for the export and import tests."""

import io
import re
import zipfile
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.support.clock import MovableClock
from tests.support.images import varied_png


def zip_of(files: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip holding `files` (name -> content), in that order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def without_ids(data: bytes) -> list[tuple[object, ...]]:
    """Every entry of an export as stored (name, time, attributes, compression) with its
    content, the post ids in canonical URLs blanked out: an import into an account of a
    database that already has posts gives new ids, the one thing allowed to differ."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [
            (
                info.filename,
                info.date_time,
                info.compress_type,
                info.external_attr,
                info.create_system,
                re.sub(rb"/posts/\d+/", b"/posts/N/", archive.read(info)),
            )
            for info in archive.infolist()
        ]


def write_sample_posts(client: TestClient, headers: dict[str, str], clock: MovableClock) -> None:
    """A published post with an image and tags, a draft and a scheduled post, each written
    at its own moment."""
    files = {"file": ("one.png", varied_png("sample"), "image/png")}
    image = client.post("/api/media", files=files, headers=headers).json()
    posts = [
        {
            "title": "Café culture",
            "content": f"Coffee first.\n\n{image['markdown']}\n\nThen *words*.",
            "tags": ["Travel", "Coffee"],
        },
        {"title": "Half an idea", "content": "Not ready yet.", "status": "draft"},
        {
            "title": "Next week",
            "content": 'Coming soon: «quotes», "double", back\\slash, émoji 🎉.',
            "status": "scheduled",
            "published_at": (clock.moment + timedelta(days=7)).isoformat(),
            "tags": ["Plans"],
        },
    ]
    for body in posts:
        clock.advance(minutes=5)
        response = client.post("/api/posts", json=body, headers=headers)
        assert response.status_code == 201, response.text
