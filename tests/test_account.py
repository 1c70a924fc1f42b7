"""The account page, writing through forms, and profile pictures (pages and API)."""

import html
import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from models import Post, User
from tests.support.accounts import PASSWORD, form_token
from tests.support.images import bomb_png, png_bytes

CRAFTED = {
    "text renamed .png": ("notes.png", b"just some text, honestly", "image/png"),
    "png header then html": (
        "page.png",
        b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
        "image/png",
    ),
    "svg": (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
    ),
    "pixel bomb": ("bomb.png", None, "image/png"),
}


def avatar_files(settings) -> list[Path]:
    return sorted(settings.avatar_dir.iterdir())


def upload_page(client, filename, data, content_type="image/png"):
    token = form_token(client, "/account")
    return client.post(
        "/account/picture",
        data={"csrf_token": token},
        files={"picture": (filename, data, content_type)},
        follow_redirects=False,
    )


@pytest.fixture
def author(make_user, browser_session, client) -> User:
    user = make_user("writer")
    browser_session(client, user)
    return user


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_upload_real_picture_through_the_page(client, db, settings, author, fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(buffer, fmt)
    response = upload_page(client, f"me.{fmt.lower()}", buffer.getvalue())
    assert response.status_code == 303
    db.commit()
    db.refresh(author)
    stored = settings.avatar_dir / author.image_file
    assert avatar_files(settings) == [stored]
    with Image.open(stored) as image:
        assert (image.format, image.size) == ("JPEG", (300, 300))
    page = client.get("/account").text
    assert f"/media/profile_pics/{author.image_file}" in page
    assert client.get(f"/media/profile_pics/{author.image_file}").status_code == 200


def test_new_picture_replaces_and_removes_the_old_one(client, db, settings, author):
    upload_page(client, "one.png", png_bytes(color=(255, 0, 0)))
    db.commit()
    db.refresh(author)
    first = author.image_file
    upload_page(client, "two.png", png_bytes(color=(0, 255, 0)))
    db.commit()
    db.refresh(author)
    assert author.image_file != first
    assert avatar_files(settings) == [settings.avatar_dir / author.image_file]


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_uploads_are_refused_with_a_form_error(client, db, settings, author, case):
    filename, data, content_type = CRAFTED[case]
    response = upload_page(client, filename, data or bomb_png(), content_type)
    assert response.status_code == 422
    assert 'class="field-error" id="error-picture"' in response.text
    db.commit()
    db.refresh(author)
    assert author.image_file is None
    assert avatar_files(settings) == []


def test_oversize_upload_is_a_form_error_while_streaming(client, db, settings, author):
    token = form_token(client, "/account")
    big = b"\xff\xd8\xff" + b"0" * (5 * 1024 * 1024)

    def body():
        # Streamed without a Content-Length, so only counting bytes can stop it.
        boundary = b"----inkwell"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        yield token.encode() + b"\r\n--" + boundary + b"\r\n"
        yield b'Content-Disposition: form-data; name="picture"; filename="big.jpg"\r\n'
        yield b"Content-Type: image/jpeg\r\n\r\n"
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]
        yield b"\r\n--" + boundary + b"--\r\n"

    response = client.post(
        "/account/picture",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=----inkwell"},
    )
    assert response.status_code == 413
    assert "larger than 4 MB" in response.text
    db.commit()
    db.refresh(author)
    assert author.image_file is None
    assert avatar_files(settings) == []


def test_path_traversal_filename_is_ignored(client, db, settings, author, tmp_path):
    response = upload_page(client, "../../../../evil.png", png_bytes())
    assert response.status_code == 303
    db.commit()
    db.refresh(author)
    assert ".." not in author.image_file
    assert avatar_files(settings) == [settings.avatar_dir / author.image_file]
    assert not (tmp_path / "evil.png").exists()


def test_failed_commit_leaves_no_orphaned_file(app, settings, make_user):
    """The file is written before the commit; if the commit fails, the file must go too."""
    from sqlalchemy import event

    from services.media import make_avatar
    from services.users import set_profile_picture

    def fail_when_saving_a_picture(session, *args):
        if any(isinstance(obj, User) and obj.image_file for obj in session.dirty):
            raise RuntimeError("database went away")

    user_id = make_user("unlucky").id
    session = app.state.database.session(write=True)
    event.listen(session, "before_flush", fail_when_saving_a_picture)
    try:
        user = session.get(User, user_id)
        with pytest.raises(RuntimeError):
            set_profile_picture(
                session, user=user, jpeg=make_avatar(png_bytes()), avatar_dir=settings.avatar_dir
            )
        session.refresh(user)
        assert user.image_file is None
    finally:
        session.close()
    assert avatar_files(settings) == []


def test_api_picture_upload_and_limits(client, settings, make_user, api_headers, db):
    user = make_user("apipic")
    headers = api_headers(user)
    ok = client.put(
        "/api/users/me/picture", files={"picture": ("a.png", png_bytes())}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.json()["image_path"].startswith("/media/profile_pics/")
    bad = client.put(
        "/api/users/me/picture", files={"picture": ("a.png", b"<svg/>")}, headers=headers
    )
    assert bad.status_code == 422
    big = client.put(
        "/api/users/me/picture",
        files={"picture": ("a.jpg", b"0" * (5 * 1024 * 1024))},
        headers=headers,
    )
    assert big.status_code == 413
    assert big.json()["detail"].startswith("The request body is larger")
    assert len(avatar_files(settings)) == 1


def test_rejected_post_keeps_everything_typed(client, author, db):
    token = form_token(client, "/posts/new")
    content = "\n\n".join(f"Paragraph {n} with <b>markup</b> & ampersands." for n in range(200))
    title = "T" * 150
    response = client.post(
        "/posts/new", data={"title": title, "content": content, "csrf_token": token}
    )
    assert response.status_code == 422
    assert "at most 100 characters" in response.text
    assert f'value="{title}"' in response.text
    # The whole text comes back in the textarea, escaped once and otherwise untouched.
    assert html.escape(content) in response.text
    db.commit()
    assert db.scalar(select(func.count()).select_from(Post)) == 0


def test_write_edit_and_delete_a_post_through_forms(client, author, db):
    token = form_token(client, "/posts/new")
    created = client.post(
        "/posts/new",
        data={"title": "Form post", "content": "Written in a form.", "csrf_token": token},
        follow_redirects=False,
    )
    assert created.status_code == 303
    post = db.scalar(select(Post))
    assert created.headers["location"].endswith(f"/posts/{post.id}/form-post")
    assert post.user_id == author.id

    token = form_token(client, f"/posts/{post.id}/edit")
    edited = client.post(
        f"/posts/{post.id}/edit",
        data={"title": "Edited", "content": "Changed.", "csrf_token": token},
        follow_redirects=False,
    )
    assert edited.status_code == 303
    assert "Your post has been updated." in client.get(edited.headers["location"]).text
    db.commit()
    db.refresh(post)
    assert (post.title, post.content) == ("Edited", "Changed.")

    confirm = client.get(f"/posts/{post.id}/delete")
    assert "Delete this post?" in confirm.text
    deleted = client.post(
        f"/posts/{post.id}/delete",
        data={"csrf_token": form_token(client, "/")},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    db.commit()
    assert db.scalar(select(func.count()).select_from(Post)) == 0


def test_profile_update_conflict_keeps_input(client, author, make_user):
    make_user("someone")
    token = form_token(client, "/account")
    response = client.post(
        "/account",
        data={"username": "someone", "email": "mine@example.com", "csrf_token": token},
    )
    assert response.status_code == 409
    assert "already taken" in response.text
    assert 'value="mine@example.com"' in response.text


def test_delete_account_needs_password_and_removes_everything(
    client, db, settings, make_account, make_post
):
    from tests.support.accounts import login

    user = make_account("goner")
    make_post(user)
    login(client, "goner")
    upload_page(client, "me.png", png_bytes())
    assert len(avatar_files(settings)) == 1
    token = form_token(client, "/account/delete")
    wrong = client.post("/account/delete", data={"password": "nope nope", "csrf_token": token})
    assert wrong.status_code == 422
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 1
    done = client.post(
        "/account/delete",
        data={"password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 0
    db.commit()
    assert db.scalar(select(func.count()).select_from(Post)) == 0
    assert avatar_files(settings) == []
    assert "Log out</button>" not in client.get("/").text


def test_api_me_shows_email_and_password_change_revokes_other_tokens(client, make_account, db):
    make_account("apime")
    first = client.post("/api/token", data={"username": "apime", "password": PASSWORD})
    second = client.post("/api/token", data={"username": "apime", "password": PASSWORD})
    keep = {"Authorization": f"Bearer {first.json()['access_token']}"}
    lose = {"Authorization": f"Bearer {second.json()['access_token']}"}
    assert client.get("/api/users/me", headers=keep).json()["email"] == "apime@example.com"
    wrong = client.put(
        "/api/users/me/password",
        json={"current_password": "not it at all", "new_password": "a new passphrase here"},
        headers=keep,
    )
    assert wrong.status_code == 403
    changed = client.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a new passphrase here"},
        headers=keep,
    )
    assert changed.status_code == 204
    assert client.get("/api/users/me", headers=keep).status_code == 200
    assert client.get("/api/users/me", headers=lose).status_code == 401


def test_form_line_endings_are_normalised(client, author, db):
    token = form_token(client, "/posts/new")
    client.post(
        "/posts/new",
        data={"title": "Lines", "content": "one\r\n\r\ntwo", "csrf_token": token},
    )
    db.commit()
    assert db.scalar(select(Post.content)) == "one\n\ntwo"


def test_preview_renders_like_the_post_page_and_saves_nothing(client, author, db):
    token = form_token(client, "/posts/new")
    content = "# Heading\n\nSome *words* and <script>alert(1)</script>"
    response = client.post(
        "/posts/new",
        data={"title": "Draft", "content": content, "csrf_token": token, "action": "preview"},
    )
    assert response.status_code == 200
    assert "<h2>Heading</h2>" in response.text
    assert "<em>words</em>" in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert html.escape(content) in response.text  # still in the textarea
    db.commit()
    assert db.scalar(select(func.count()).select_from(Post)) == 0
    published = client.post(
        "/posts/new",
        data={"title": "Draft", "content": content, "csrf_token": token, "action": "publish"},
    )
    preview_html = response.text.split('<div class="post-content">', 1)[1].split("</div>", 1)[0]
    page_html = published.text.split('<div class="post-content">', 1)[1].split("</div>", 1)[0]
    assert preview_html == page_html
