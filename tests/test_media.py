"""Post images: upload (API, post form, library page, the script's JSON route), storage on disk
and in the database, serving, responsive rendering, the library page, deletion, quotas,
account deletion, orphans, and backups that restore them."""

import io
import os
import re
import sqlite3
import subprocess
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event, func, select

from main import create_app
from models import MediaBlob, MediaFile, PostMedia, User
from services import images
from services import media as pictures
from services.backup import backup, media_copy_path
from services.markdown import render_markdown
from tests.support.accounts import csrf_from, form_token
from tests.support.commands import inkwell
from tests.support.images import png_bytes, varied_png
from tests.support.load import ROOT

BOTH = pytest.mark.parametrize("settings", ["local", "database"], indirect=True)
IMAGE_URL = re.compile(r"/media/images/[0-9a-f]{32}-\d+x\d+\.jpg")


def jpeg_with_metadata(size: tuple[int, int], orientation: int = 1) -> bytes:
    image = Image.new("RGB", size, (40, 160, 90))
    image.paste((250, 20, 20), (0, 0, size[0] // 2, size[1]))  # the left half red
    exif = image.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N"}  # a GPS block
    output = io.BytesIO()
    image.save(output, "JPEG", exif=exif, comment=b"private note")
    return output.getvalue()


def upload(client, headers, data: bytes, name: str = "photo.png"):
    return client.post("/api/media", files={"file": (name, data, "image/png")}, headers=headers)


def stored_bytes(app, db, name: str) -> bytes | None:
    db.commit()
    return app.state.media_storage.read(db, name)


def names_of(body: dict) -> list[str]:
    digest_and_size = body["url"].rsplit("/", 1)[1]
    digest = digest_and_size.split("-")[0]
    sizes = pictures.variant_sizes(body["width"], body["height"])
    return [images.file_name(digest, w, h) for w, h in sizes]


# ---------------------------------------------------------------- upload and storage


@BOTH
def test_upload_stores_every_width_and_serves_them(app, client, db, make_user, api_headers):
    headers = api_headers(make_user())
    response = upload(client, headers, png_bytes((2000, 1000)))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["width"], body["height"], body["widths"]) == (1600, 800, [480, 960, 1600])
    assert body["url"].startswith("http://testserver/media/images/")
    assert body["markdown"] == f"![]({body['url'].removeprefix('http://testserver')})"
    for (width, height), name in zip(
        pictures.variant_sizes(1600, 800), names_of(body), strict=True
    ):
        served = client.get(f"/media/{name}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert served.content == stored_bytes(app, db, name)
        with Image.open(io.BytesIO(served.content)) as image:
            assert (image.format, image.size) == ("JPEG", (width, height))


@BOTH
def test_files_are_named_by_content_and_a_repeat_upload_is_the_same_image(
    client, db, make_user, api_headers
):
    headers = api_headers(make_user())
    first = upload(client, headers, varied_png("a")).json()
    again = upload(client, headers, varied_png("a")).json()
    other = upload(client, headers, varied_png("b")).json()
    assert again["id"] == first["id"] and again["url"] == first["url"]
    assert other["url"] != first["url"]
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 2


def test_storage_folder_holds_exactly_the_variants(app, client, settings, make_user, api_headers):
    body = upload(client, api_headers(make_user()), png_bytes((1000, 500))).json()
    files = sorted(
        p.relative_to(settings.media_dir).as_posix() for p in settings.media_dir.rglob("*.jpg")
    )
    assert files == sorted(names_of(body))
    assert body["widths"] == [480, 960, 1000]


def test_database_storage_writes_no_file(client, db, settings, make_user, api_headers, request):
    database_settings = settings.model_copy(update={"media_storage": "database"})
    application = create_app(database_settings)
    with TestClient(application) as other_client:
        user = make_user()
        body = upload(other_client, api_headers(user), png_bytes((700, 400))).json()
        assert other_client.get(body["url"]).status_code == 200
    application.state.database.dispose()
    db.commit()
    assert not any(settings.media_dir.rglob("*.jpg"))
    assert sorted(db.scalars(select(MediaBlob.name))) == sorted(names_of(body))


@pytest.mark.parametrize("settings", ["database"], indirect=True)
def test_database_media_answers_conditional_requests(client, make_user, api_headers):
    body = upload(client, api_headers(make_user()), png_bytes((300, 200))).json()
    first = client.get(body["url"])
    etag = first.headers["etag"]
    again = client.get(body["url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/media/images/" + "0" * 32 + "-10x10.jpg").status_code == 404
    assert client.get("/media/../config.py").status_code == 404


def test_small_images_are_never_enlarged_and_keep_their_ratio(client, make_user, api_headers):
    body = upload(client, api_headers(make_user()), png_bytes((300, 120))).json()
    assert (body["width"], body["height"], body["widths"]) == (300, 120, [300])
    tall = upload(client, api_headers(make_user()), png_bytes((1000, 4000))).json()
    # At most MAX_POST_IMAGE_PIXELS for the widest copy, in the same proportions.
    assert tall["width"] * tall["height"] <= pictures.MAX_POST_IMAGE_PIXELS
    assert abs(tall["height"] / tall["width"] - 4) < 0.01


@BOTH
def test_orientation_is_applied_and_metadata_stripped(app, client, db, make_user, api_headers):
    data = jpeg_with_metadata((600, 300), orientation=6)
    body = upload(client, api_headers(make_user()), data, "phone.jpg").json()
    # Orientation 6 turns it a quarter clockwise: upright it is 300 wide, 600 high.
    assert (body["width"], body["height"]) == (300, 600)
    stored = stored_bytes(app, db, names_of(body)[-1])
    assert b"SecretCam" not in stored and b"private note" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.size == (300, 600)
        assert not image.getexif()
        assert "comment" not in image.info
        top = image.getpixel((150, 100))
        assert top[0] > 200 and top[1] < 60  # the red half is now on top


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GIF89a not really", 422),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 422),
        (png_bytes()[:60], 422),
        (b"\x89PNG\r\n\x1a\n" + b"<html><script>alert(1)</script></html>", 422),
    ],
)
def test_what_is_not_a_picture_is_refused(client, db, make_user, api_headers, data, status):
    response = upload(client, api_headers(make_user()), data)
    assert response.status_code == status
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 0


def test_pixel_bombs_and_oversize_uploads_are_refused(client, db, settings, make_user, api_headers):
    from tests.support.images import bomb_png

    headers = api_headers(make_user())
    assert upload(client, headers, bomb_png()).status_code == 422
    big = b"\x89PNG" + os.urandom(pictures.MAX_PICTURE_BYTES)
    assert upload(client, headers, big).status_code == 413
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 0
    assert not settings.media_dir.joinpath("images").exists()


def test_busy_decoder_answers_503(client, make_user, api_headers, monkeypatch):
    monkeypatch.setattr(pictures, "DECODE_WAIT_SECONDS", 0)
    headers = api_headers(make_user())
    assert pictures._decode_slots.acquire(timeout=1)
    try:
        response = upload(client, headers, png_bytes())
    finally:
        pictures._decode_slots.release()
    assert response.status_code == 503
    assert upload(client, headers, png_bytes()).status_code == 201


@BOTH
def test_quota_bounds_the_library(app, client, make_user, api_headers):
    app.state.settings = app.state.settings.model_copy(update={"media_max_files_per_user": 2})
    headers = api_headers(make_user())
    assert upload(client, headers, varied_png("1")).status_code == 201
    assert upload(client, headers, varied_png("2")).status_code == 201
    response = upload(client, headers, varied_png("3"))
    assert response.status_code == 409
    assert "full" in response.json()["detail"]
    # Someone else's library is their own.
    assert upload(client, api_headers(make_user()), varied_png("3")).status_code == 201


def test_byte_quota(app, client, make_user, api_headers):
    app.state.settings = app.state.settings.model_copy(update={"media_max_bytes_per_user": 2000})
    response = upload(client, api_headers(make_user()), varied_png("big"))
    assert response.status_code == 409


@BOTH
def test_failed_commit_leaves_no_file_and_no_row(app, db, settings, make_user):
    user = make_user()
    session = app.state.database.session(write=True)

    def fail(session, context, instances):
        if any(isinstance(obj, MediaFile) for obj in session.new):
            raise RuntimeError("database went away")

    event.listen(session, "before_flush", fail)
    image = pictures.make_post_image(png_bytes((900, 500)))
    try:
        with pytest.raises(RuntimeError):
            images.upload_image(
                session,
                user=session.get(User, user.id),
                image=image,
                storage=app.state.media_storage,
                max_files=10,
                max_bytes=10**9,
            )
    finally:
        session.close()
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 0
    assert db.scalar(select(func.count()).select_from(MediaBlob)) == 0
    assert not list(settings.media_dir.rglob("*.jpg"))


# ---------------------------------------------------------------- listing and deleting


def test_list_is_own_newest_first_and_paginated(client, clock, make_user, api_headers):
    owner, other = api_headers(make_user()), api_headers(make_user())
    ids = []
    for n in range(3):
        ids.append(upload(client, owner, varied_png(f"list{n}")).json()["id"])
        clock.advance(seconds=1)
    upload(client, other, varied_png("someone else"))
    first = client.get("/api/media?per_page=2", headers=owner)
    assert [item["id"] for item in first.json()] == [ids[2], ids[1]]
    assert 'rel="next"' in first.headers["link"]
    second = client.get("/api/media?per_page=2&page=2", headers=owner)
    assert [item["id"] for item in second.json()] == [ids[0]]
    assert client.get("/api/media").status_code == 401


@BOTH
def test_delete_refuses_while_a_post_shows_it_unless_forced(
    app, client, db, make_user, api_headers
):
    author = make_user()
    headers = api_headers(author)
    body = upload(client, headers, png_bytes((640, 480))).json()
    post = client.post(
        "/api/posts", json={"title": "With a picture", "content": body["markdown"]}, headers=headers
    ).json()
    listed = client.get("/api/media", headers=headers).json()[0]
    assert listed["used_in"] == [post["id"]] and listed["in_use"]
    assert (
        client.delete(f"/api/media/{body['id']}", headers=api_headers(make_user())).status_code
        == 404
    )
    assert client.delete("/api/media/999999", headers=headers).status_code == 404
    refused = client.delete(f"/api/media/{body['id']}", headers=headers)
    assert refused.status_code == 409
    assert client.get(body["url"]).status_code == 200
    assert client.delete(f"/api/media/{body['id']}?force=true", headers=headers).status_code == 204
    assert client.get(body["url"]).status_code == 404
    for name in names_of(body):
        assert stored_bytes(app, db, name) is None
    assert db.scalar(select(func.count()).select_from(PostMedia)) == 0
    assert client.get(post["url"]).status_code == 200


@BOTH
def test_which_posts_show_an_image_follows_new_posts_and_edits(
    client, make_user, api_headers, count_statements
):
    headers = api_headers(make_user())
    body = upload(client, headers, png_bytes((640, 480))).json()
    written = count_statements()
    post = client.post(
        "/api/posts", json={"title": "Pictured", "content": body["markdown"]}, headers=headers
    ).json()
    touching = [sql for sql in written.statements if "post_media" in sql]
    # A new post has no rows to clear: one insert, no delete.
    assert [sql.split()[0] for sql in touching] == ["INSERT"]
    assert client.get("/api/media", headers=headers).json()[0]["used_in"] == [post["id"]]
    edited = client.patch(
        f"/api/posts/{post['id']}", json={"content": "No picture now."}, headers=headers
    )
    assert edited.status_code == 200
    assert client.get("/api/media", headers=headers).json()[0]["used_in"] == []


def test_unused_image_is_deleted_at_once(app, client, db, make_user, api_headers):
    headers = api_headers(make_user())
    body = upload(client, headers, png_bytes((640, 480))).json()
    assert client.delete(f"/api/media/{body['id']}", headers=headers).status_code == 204
    assert all(stored_bytes(app, db, name) is None for name in names_of(body))


def test_references_follow_the_post_content(client, db, make_user, api_headers):
    headers = api_headers(make_user())
    body = upload(client, headers, png_bytes((640, 480))).json()
    post = client.post(
        "/api/posts", json={"title": "T", "content": "Nothing yet"}, headers=headers
    ).json()

    def used() -> list[int]:
        return client.get("/api/media", headers=headers).json()[0]["used_in"]

    assert used() == []
    client.patch(f"/api/posts/{post['id']}", json={"content": body["markdown"]}, headers=headers)
    assert used() == [post["id"]]
    client.patch(f"/api/posts/{post['id']}", json={"content": "Gone again"}, headers=headers)
    assert used() == []
    client.patch(f"/api/posts/{post['id']}", json={"content": body["markdown"]}, headers=headers)
    client.delete(f"/api/posts/{post['id']}", headers=headers)
    assert used() == []


# ---------------------------------------------------------------- rendering


def test_own_images_render_responsive(client, make_user, api_headers):
    headers = api_headers(make_user())
    body = upload(client, headers, png_bytes((2000, 1500))).json()
    content = f"Look:\n\n{body['markdown'][:2]}A red square{body['markdown'][2:]}\n\n![far](https://example.com/a.png)"
    post = client.post("/api/posts", json={"title": "Pic", "content": content}, headers=headers)
    page = client.get(post.json()["url"]).text
    (own,) = re.findall(r"<img [^>]*alt=\"A red square\"[^>]*>", page)
    path = body["url"].removeprefix("http://testserver")
    assert f'src="{path}"' in own
    assert 'width="1600"' in own and 'height="1200"' in own and 'loading="lazy"' in own
    srcset = re.search(r'srcset="([^"]+)"', own).group(1)
    assert [entry.rsplit(" ", 1)[1] for entry in srcset.split(", ")] == ["480w", "960w", "1600w"]
    assert 'sizes="' in own
    for entry in srcset.split(", "):
        assert client.get(entry.split(" ")[0]).status_code == 200
    (remote,) = re.findall(r'<img src="https://example.com/a.png"[^>]*>', page)
    assert "srcset" not in remote


def test_renderer_recognises_only_sizes_the_site_stores():
    digest = "a" * 32
    html = render_markdown(f"![x](/media/images/{digest}-1700x800.jpg)")
    assert "srcset" not in html  # wider than anything stored
    html = render_markdown(f"![x](/media/images/{digest}-400x300.jpg)")
    assert f'srcset="/media/images/{digest}-400x300.jpg 400w"' in html
    assert 'width="400"' in html and 'height="300"' in html


def test_markdown_cannot_smuggle_image_attributes():
    html = render_markdown(
        '![x](https://example.com/a.png "srcset=javascript:alert(1)")\n\n'
        "<img src=x srcset=javascript:alert(1) onerror=alert(1) loading=eager>"
    )
    tags = re.findall(r"<img [^>]*>", html)
    assert len(tags) == 1
    attributes = re.findall(r' ([a-z]+)="', tags[0])
    assert attributes == ["src", "alt", "title"]


# ---------------------------------------------------------------- the post form


@pytest.fixture
def writer(make_user, browser_session, client) -> User:
    user = make_user("writer")
    browser_session(client, user)
    return user


@BOTH
def test_insert_image_without_javascript_keeps_everything_typed(client, writer):
    token = form_token(client, "/posts/new")
    typed = {
        "title": "Holiday",
        "content": "We went to the sea.",
        "tags": "travel, sea",
        "status": "draft",
        "csrf_token": token,
    }
    response = client.post(
        "/posts/new",
        data={**typed, "action": "insert_image"},
        files={"image": ("sea.png", png_bytes((1200, 800)), "image/png")},
    )
    assert response.status_code == 200
    page = response.text
    assert 'value="Holiday"' in page and 'value="travel, sea"' in page
    content = re.search(r"<textarea[^>]*>([^<]*)</textarea>", page).group(1)
    assert content.startswith("We went to the sea.\n\n![](/media/images/")
    assert IMAGE_URL.search(content)
    saved = client.post(
        "/posts/new",
        data={**typed, "content": content, "action": "save", "csrf_token": csrf_from(page)},
        follow_redirects=True,
    )
    assert saved.status_code == 200
    assert 'loading="lazy"' in saved.text and "srcset=" in saved.text


def test_insert_image_on_edit_keeps_the_version(client, writer, make_post):
    post = make_post(writer, content="Old text")
    token = form_token(client, f"/posts/{post.id}/edit")
    response = client.post(
        f"/posts/{post.id}/edit",
        data={
            "title": "Edited",
            "content": "New text",
            "version": "1",
            "csrf_token": token,
            "action": "insert_image",
            "status": "published",
        },
        files={"image": ("a.png", png_bytes((500, 400)), "image/png")},
    )
    assert response.status_code == 200
    assert 'name="version" value="1"' in response.text and 'value="Edited"' in response.text
    assert "New text\n\n![](/media/images/" in response.text


def test_insert_image_errors_are_shown_beside_the_field(client, writer):
    token = form_token(client, "/posts/new")
    data = {"title": "T", "content": "Kept", "csrf_token": token, "action": "insert_image"}
    missing = client.post("/posts/new", data=data)
    assert missing.status_code == 422 and "Choose an image to insert." in missing.text
    bad = client.post(
        "/posts/new", data=data, files={"image": ("x.png", b"not a picture", "image/png")}
    )
    assert bad.status_code == 422
    assert 'id="error-image"' in bad.text and ">Kept</textarea>" in bad.text


def test_post_form_works_as_before_without_an_image(client, writer, db):
    token = form_token(client, "/posts/new")
    response = client.post(
        "/posts/new",
        data={"title": "Plain", "content": "Text", "csrf_token": token, "action": "save"},
        files={"image": ("", b"", "application/octet-stream")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 0


@BOTH
def test_script_upload_route_answers_json_and_needs_the_csrf_token(client, writer):
    token = form_token(client, "/posts/new")
    files = {"file": ("a.png", png_bytes((800, 600)), "image/png")}
    refused = client.post("/account/media/upload", files=files, data={"csrf_token": "forged"})
    assert refused.status_code == 403
    response = client.post("/account/media/upload", files=files, data={"csrf_token": token})
    assert response.status_code == 201
    assert response.json()["markdown"].startswith("![](/media/images/")
    assert (response.json()["width"], response.json()["height"]) == (800, 600)
    bad = client.post(
        "/account/media/upload",
        files={"file": ("a.png", b"nope", "image/png")},
        data={"csrf_token": token},
    )
    assert bad.status_code == 422 and bad.json()["detail"]


def test_post_form_loads_the_script_and_the_csp_allows_it(client, writer):
    page = client.get("/posts/new")
    script = re.search(r'<script src="([^"]+post-images\.js[^"]*)" defer>', page.text).group(1)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    served = client.get(script)
    assert served.status_code == 200 and "fetch(" in served.text
    assert 'enctype="multipart/form-data"' in page.text


# ---------------------------------------------------------------- the library page


@BOTH
def test_library_page_lists_images_with_their_posts(client, writer, db, make_user, make_post):
    token = form_token(client, "/account/media")
    response = client.post(
        "/account/media",
        data={"csrf_token": token},
        files={"file": ("a.png", png_bytes((700, 350)), "image/png")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    db.commit()
    item = db.scalar(select(MediaFile))
    snippet = images.markdown_snippet(item)
    make_post(writer, title="Mine with it", content=snippet)
    make_post(make_user(), title="Someone else's secret draft", content=snippet, status="draft")
    page = client.get("/account/media")
    assert page.status_code == 200
    assert "private" in page.headers["cache-control"]
    assert f'value="{snippet}"' in page.text
    assert "Mine with it" in page.text and "1 post by other authors" in page.text
    assert "secret draft" not in page.text
    assert "700 \u00d7 350 pixels" in page.text


def test_library_page_is_for_its_author_only(client, make_user, browser_session, api_headers):
    assert client.get("/account/media", follow_redirects=False).status_code == 303
    owner = make_user()
    body = upload(client, api_headers(owner), png_bytes()).json()
    browser_session(client, make_user())
    assert body["markdown"] not in client.get("/account/media").text
    assert client.get(f"/account/media/{body['id']}/delete").status_code == 404


def test_library_upload_errors_are_shown(client, writer):
    token = form_token(client, "/account/media")
    response = client.post(
        "/account/media",
        data={"csrf_token": token},
        files={"file": ("a.txt", b"text", "text/plain")},
    )
    assert response.status_code == 422 and 'id="error-file"' in response.text


@BOTH
def test_deleting_an_image_in_use_asks_first(app, client, writer, db, make_post, api_headers):
    body = upload(client, api_headers(writer), png_bytes((640, 480))).json()
    make_post(writer, title="Shows it", content=body["markdown"])
    token = form_token(client, "/account/media")
    asked = client.post(f"/account/media/{body['id']}/delete", data={"csrf_token": token})
    assert asked.status_code == 409
    assert "Shows it" in asked.text and 'name="confirm" value="yes"' in asked.text
    assert client.get(body["url"]).status_code == 200
    assert client.get(f"/account/media/{body['id']}/delete").status_code == 200
    done = client.post(
        f"/account/media/{body['id']}/delete",
        data={"csrf_token": csrf_from(asked.text), "confirm": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert client.get(body["url"]).status_code == 404


def test_unused_image_is_deleted_from_the_page_without_asking(client, writer, api_headers):
    body = upload(client, api_headers(writer), png_bytes()).json()
    token = form_token(client, "/account/media")
    response = client.post(
        f"/account/media/{body['id']}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert client.get(body["url"]).status_code == 404


# ---------------------------------------------------------------- accounts and orphans


@BOTH
def test_deleting_the_account_removes_its_media(
    app, client, db, settings, make_account, api_headers
):
    from tests.support.accounts import PASSWORD

    user = make_account()
    headers = api_headers(user)
    body = upload(client, headers, png_bytes((900, 600))).json()
    client.put(
        "/api/users/me/picture",
        files={"picture": ("me.png", png_bytes(), "image/png")},
        headers=headers,
    )
    keeper = api_headers(make_account())
    kept = upload(client, keeper, png_bytes((900, 600))).json()
    response = client.request(
        "DELETE", "/api/users/me", json={"password": PASSWORD}, headers=headers
    )
    assert response.status_code == 204
    db.commit()
    assert db.scalar(select(func.count()).select_from(MediaFile)) == 1
    assert client.get(body["url"]).status_code == 404
    assert client.get(kept["url"]).status_code == 200
    blobs = db.scalars(select(MediaBlob.name)).all()
    files = [
        p.relative_to(settings.media_dir).as_posix() for p in settings.media_dir.rglob("*.jpg")
    ]
    assert sorted(blobs if settings.media_storage == "database" else files) == sorted(
        names_of(kept)
    )


@pytest.mark.parametrize("settings", ["database"], indirect=True)
def test_avatars_live_in_the_database_too(client, db, settings, make_user, api_headers):
    headers = api_headers(make_user())
    user = client.put(
        "/api/users/me/picture",
        files={"picture": ("me.png", png_bytes(), "image/png")},
        headers=headers,
    ).json()
    db.commit()
    (name,) = db.scalars(select(MediaBlob.name)).all()
    assert name.startswith("profile_pics/")
    served = client.get(f"/media/{name}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert not list(settings.media_dir.rglob("*.jpg"))
    assert user["id"]


def test_orphan_sweep_spares_referenced_images_and_removes_stranded_ones(
    app, client, settings, make_user, api_headers
):
    body = upload(client, api_headers(make_user()), png_bytes((900, 600))).json()
    images_dir = settings.media_dir / "images"
    stranded = images_dir / ("f" * 32 + "-480x320.jpg")
    young = images_dir / ("e" * 32 + "-480x320.jpg")
    foreign = images_dir / "notes.txt"
    for path in (stranded, young, foreign):
        path.write_bytes(b"x")
    old = time.time() - 3600
    for path in [stranded, foreign, *images_dir.iterdir()]:
        os.utime(path, (old, old))
    os.utime(young, None)
    application = create_app(settings)
    with TestClient(application):
        pass  # the start-up sweep runs
    application.state.database.dispose()
    left = sorted(p.name for p in images_dir.iterdir())
    expected = sorted([*(name.split("/")[1] for name in names_of(body)), young.name, foreign.name])
    assert left == expected


# ---------------------------------------------------------------- backups


@BOTH
def test_backup_restores_the_images(
    app, client, db, settings, make_user, api_headers, tmp_path, backend
):
    if backend != "sqlite":
        pytest.skip("restoring a PostgreSQL dump is covered by test_backup.py")
    body = upload(client, api_headers(make_user()), png_bytes((1000, 700))).json()
    path = body["url"].removeprefix("http://testserver")
    original = client.get(path).content
    output = tmp_path / "backups" / "copy.db"
    media_dir = settings.media_dir if settings.media_storage == "local" else None
    backup(settings.database_url, output, media_dir)
    assert media_copy_path(output).is_dir() == (media_dir is not None)
    # Restore somewhere else entirely: the backup file as the database, its media as MEDIA_DIR.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (restored_dir / "blog.db").write_bytes(output.read_bytes())
    if media_dir is not None:
        media_copy_path(output).rename(restored_dir / "media")
    restored = settings.model_copy(
        update={
            "database_url": f"sqlite:///{restored_dir / 'blog.db'}",
            "media_dir": restored_dir / "media",
        }
    )
    application = create_app(restored)
    with TestClient(application) as restored_client:
        served = restored_client.get(path)
        assert served.status_code == 200 and served.content == original
    application.state.database.dispose()
    with sqlite3.connect(output) as copy:
        assert copy.execute("SELECT count(*) FROM media").fetchone() == (1,)


def test_backup_command_copies_the_media_directory(
    client, settings, make_user, api_headers, tmp_path, backend
):
    if backend != "sqlite":
        pytest.skip("one database is enough to check the command's wiring")
    body = upload(client, api_headers(make_user()), png_bytes((640, 480))).json()
    output = tmp_path / "out" / "b.db"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "MEDIA_DIR": str(settings.media_dir),
    }
    result = subprocess.run(
        inkwell("backup", "--output", str(output)),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Media copied to" in result.stdout
    copied = sorted(
        p.relative_to(media_copy_path(output)).as_posix()
        for p in media_copy_path(output).rglob("*.jpg")
    )
    assert copied == sorted(names_of(body))
