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
                session,
                user=user,
                jpeg=make_avatar(png_bytes()),
                storage=app.state.media_storage,
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
        data={"title": "Edited", "content": "Changed.", "version": "1", "csrf_token": token},
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
        data={"username": "SomeOne", "email": "writer@example.com", "csrf_token": token},
    )
    assert response.status_code == 409
    assert "That username or email address cannot be used" in response.text
    assert 'value="SomeOne"' in response.text


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


# ---------------------------------------------------------------- slow work outside transactions


@pytest.fixture
def slow_work(app, monkeypatch):
    """Record, for every argon2 hash or verification and every picture conversion, whether
    any database session of the app had a transaction open at that moment (on SQLite a
    write request's transaction holds the database's write lock)."""
    from services import media, passwords, posts, users

    sessions = []
    real_session = app.state.database.session

    def tracked_session(*, write: bool):
        session = real_session(write=write)
        sessions.append(session)
        return session

    monkeypatch.setattr(app.state.database, "session", tracked_session)
    calls: list[tuple[str, bool]] = []

    def watched(name, real):
        def wrapper(*args, **kwargs):
            calls.append((name, any(session.in_transaction() for session in sessions)))
            return real(*args, **kwargs)

        return wrapper

    hash_password = watched("hash", passwords.hash_password)
    monkeypatch.setattr(passwords, "hash_password", hash_password)
    monkeypatch.setattr(users, "hash_password", hash_password, raising=False)
    monkeypatch.setattr(passwords, "verify_password", watched("verify", passwords.verify_password))
    monkeypatch.setattr(media, "make_avatar", watched("picture", media.make_avatar))
    monkeypatch.setattr(posts, "rendered_fields", watched("render", posts.rendered_fields))
    return calls


def _register_form(client):
    token = form_token(client, "/register")
    data = {"username": "newbie", "email": "newbie@example.com", "csrf_token": token}
    data |= {"password": PASSWORD, "confirm_password": PASSWORD}
    return client.post("/register", data=data, follow_redirects=False)


def _register_api(client):
    body = {"username": "newbie", "email": "newbie@example.com", "password": PASSWORD}
    return client.post("/api/users", json=body)


def _password_form(client):
    token = form_token(client, "/account")
    data = {"current_password": PASSWORD, "new_password": "another long passphrase"}
    data |= {"confirm_password": "another long passphrase", "csrf_token": token}
    return client.post("/account/password", data=data, follow_redirects=False)


def _password_api(client):
    body = {"current_password": PASSWORD, "new_password": "another long passphrase"}
    return client.put("/api/users/me/password", json=body, headers=client.api_headers)


def _email_form(client):
    token = form_token(client, "/account")
    data = {"username": "slowpoke", "email": "new@example.com", "password": PASSWORD}
    return client.post("/account", data={**data, "csrf_token": token}, follow_redirects=False)


def _email_api(client):
    body = {"email": "new@example.com", "current_password": PASSWORD}
    return client.patch("/api/users/me", json=body, headers=client.api_headers)


def _delete_form(client):
    token = form_token(client, "/account/delete")
    data = {"password": PASSWORD, "csrf_token": token}
    return client.post("/account/delete", data=data, follow_redirects=False)


def _delete_api(client):
    body = {"password": PASSWORD}
    return client.request("DELETE", "/api/users/me", json=body, headers=client.api_headers)


def _picture_form(client):
    return upload_page(client, "me.png", png_bytes())


def _picture_api(client):
    files = {"picture": ("me.png", png_bytes())}
    return client.put("/api/users/me/picture", files=files, headers=client.api_headers)


LONG_POST = "A paragraph with *emphasis* and a [link](https://example.com).\n\n" * 1000


def _edit_form(client):
    post_id = client.post_id
    token = form_token(client, f"/posts/{post_id}/edit")
    data = {"title": "Edited", "content": LONG_POST, "version": "1", "csrf_token": token}
    return client.post(f"/posts/{post_id}/edit", data=data, follow_redirects=False)


def _edit_api(client):
    body = {"content": LONG_POST}
    return client.patch(f"/api/posts/{client.post_id}", json=body, headers=client.api_headers)


def _login_form(client):
    client.cookies.clear()
    token = form_token(client, "/login")
    data = {"username": "slowpoke", "password": PASSWORD, "csrf_token": token}
    return client.post("/login", data=data, follow_redirects=False)


def _login_api(client):
    return client.post("/api/token", data={"username": "slowpoke", "password": PASSWORD})


SLOW_FLOWS = {
    "register form": (_register_form, 303, "hash"),
    "register api": (_register_api, 201, "hash"),
    "password form": (_password_form, 303, "hash"),
    "password api": (_password_api, 204, "hash"),
    "email form": (_email_form, 303, "verify"),
    "email api": (_email_api, 200, "verify"),
    "delete form": (_delete_form, 303, "verify"),
    "delete api": (_delete_api, 204, "verify"),
    "picture form": (_picture_form, 303, "picture"),
    "picture api": (_picture_api, 200, "picture"),
    "edit form": (_edit_form, 303, "render"),
    "edit api": (_edit_api, 200, "render"),
    "login form": (_login_form, 303, "verify"),
    "login api": (_login_api, 200, "verify"),
}


@pytest.mark.parametrize("flow", SLOW_FLOWS)
def test_no_transaction_is_open_during_slow_work(
    client, make_account, make_post, browser_session, api_headers, slow_work, flow
):
    """argon2, image processing and rendering a long post take tens of milliseconds: run
    while a write transaction is open, they held SQLite's write lock that long, and
    concurrent registrations failed with "database is locked". Every write path does that
    work with no transaction open."""
    send, expected, kind = SLOW_FLOWS[flow]
    user = make_account("slowpoke")
    if "register" not in flow and "login" not in flow:
        browser_session(client, user)
        client.api_headers = api_headers(user)
        client.post_id = make_post(user).id
    slow_work.clear()
    response = send(client)
    assert response.status_code == expected, response.text
    assert kind in {name for name, _ in slow_work}
    assert slow_work == [(name, False) for name, _ in slow_work]


# ---------------------------------------------------------------- registrations per address


def _api_register(app, number, address="192.0.2.1"):
    from fastapi.testclient import TestClient

    body = {"username": f"joiner{number}", "email": f"joiner{number}@example.com"}
    client = TestClient(app, client=(address, 50000))
    return client.post("/api/users", json={**body, "password": PASSWORD})


def test_registrations_from_one_address_are_limited(app, clock, db, monkeypatch):
    from services import throttling

    monkeypatch.setattr(throttling, "REGISTRATIONS_PER_ADDRESS", 3)
    assert [_api_register(app, n).status_code for n in range(3)] == [201] * 3
    refused = _api_register(app, 3)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) == 3600  # the clock stands still
    # A duplicate is a registration attempt too (each one answers "is this address known?").
    assert _api_register(app, 0, "192.0.2.2").status_code == 409
    assert [_api_register(app, n, "192.0.2.2").status_code for n in (4, 5)] == [201, 201]
    assert _api_register(app, 6, "192.0.2.2").status_code == 429
    # Other addresses are not affected, and the allowance comes back after the hour.
    assert _api_register(app, 7, "192.0.2.3").status_code == 201
    clock.advance(minutes=61)
    assert _api_register(app, 8).status_code == 201
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 7


def test_registration_form_says_when_registrations_are_used_up(client, clock, monkeypatch):
    from services import throttling

    monkeypatch.setattr(throttling, "REGISTRATIONS_PER_ADDRESS", 1)
    assert _register_form(client).status_code == 303
    client.cookies.clear()
    token = form_token(client, "/register")
    data = {"username": "second", "email": "second@example.com", "csrf_token": token}
    data |= {"password": PASSWORD, "confirm_password": PASSWORD}
    response = client.post("/register", data=data)
    assert response.status_code == 429
    assert "Too many accounts were created from here. Try again in 60 minutes." in response.text
    assert 'value="second@example.com"' in response.text


# ---------------------------------------------------------------- a duplicate says nothing more


def test_a_taken_email_and_a_taken_username_get_the_same_answer(client, make_user):
    make_user("taken", email="taken@example.com")
    by_email = {"username": "fresh", "email": "taken@example.com", "password": PASSWORD}
    by_name = {"username": "TAKEN", "email": "fresh@example.com", "password": PASSWORD}
    api = [client.post("/api/users", json=body) for body in (by_email, by_name)]
    assert [r.status_code for r in api] == [409, 409]
    assert api[0].json() == api[1].json()

    pages = []
    for body in (by_email, by_name):
        token = form_token(client, "/register")
        data = {**body, "confirm_password": PASSWORD, "csrf_token": token}
        response = client.post("/register", data=data)
        assert response.status_code == 409
        text = response.text.replace(body["username"], "NAME").replace(body["email"], "EMAIL")
        pages.append(text.replace(token, "TOKEN"))
    assert pages[0] == pages[1]
    assert "already registered" not in pages[0]


# ---------------------------------------------------------------- the current password


def _wrong_password_change(client, headers, guess="not the password"):
    body = {"current_password": guess, "new_password": "the attacker's passphrase"}
    return client.put("/api/users/me/password", json=body, headers=headers)


def test_current_password_guesses_are_throttled(client, clock, make_account, api_headers):
    """The finding: 30 wrong guesses all got 403, then the right one took the account."""
    headers = api_headers(make_account("victim"))
    statuses = [_wrong_password_change(client, headers, f"guess {n}") for n in range(30)]
    assert [r.status_code for r in statuses[:5]] == [403] * 5
    assert [r.status_code for r in statuses[5:]] == [429] * 25
    assert int(statuses[-1].headers["retry-after"]) > 0
    right = _wrong_password_change(client, headers, PASSWORD)
    assert right.status_code == 429
    clock.advance(minutes=16)
    assert _wrong_password_change(client, headers, PASSWORD).status_code == 204


def test_guesses_through_every_door_count_once(
    client, clock, make_account, api_headers, browser_session, db
):
    user = make_account("victim")
    headers = api_headers(user)
    browser_session(client, user)
    assert _wrong_password_change(client, headers).status_code == 403
    wrong_delete = {"password": "not the password"}
    deleted = client.request("DELETE", "/api/users/me", json=wrong_delete, headers=headers)
    assert deleted.status_code == 403
    token = form_token(client, "/account/delete")
    form_delete = client.post("/account/delete", data={**wrong_delete, "csrf_token": token})
    assert form_delete.status_code == 422
    token = form_token(client, "/account")
    data = {"current_password": "not the password", "new_password": "another passphrase"}
    data |= {"confirm_password": "another passphrase", "csrf_token": token}
    assert client.post("/account/password", data=data).status_code == 422
    email = {"email": "thief@example.com", "current_password": "not the password"}
    assert client.patch("/api/users/me", json=email, headers=headers).status_code == 403
    # Five failures, five doors: the account must wait at every door now, login included.
    right_delete = {"password": PASSWORD}
    throttled = client.request("DELETE", "/api/users/me", json=right_delete, headers=headers)
    assert throttled.status_code == 429
    token = form_token(client, "/account/delete")
    page = client.post("/account/delete", data={**right_delete, "csrf_token": token})
    assert page.status_code == 429
    assert "Too many failed attempts" in page.text
    login = client.post("/api/token", data={"username": "victim", "password": PASSWORD})
    assert login.status_code == 429
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 1


def test_deleting_over_the_api_needs_the_password(client, make_account, api_headers, db):
    user = make_account("leaving")
    headers = api_headers(user)
    assert client.delete("/api/users/me", headers=headers).status_code == 422
    for path in ("/api/users/me", f"/api/users/{user.id}"):
        wrong = client.request("DELETE", path, json={"password": "nope nope"}, headers=headers)
        assert wrong.status_code == 403
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 1
    done = client.request(
        "DELETE", f"/api/users/{user.id}", json={"password": PASSWORD}, headers=headers
    )
    assert done.status_code == 204
    db.commit()
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_changing_the_email_needs_the_current_password(client, make_account, api_headers, db):
    user = make_account("mover", email="mover@example.com")
    headers = api_headers(user)
    for path in ("/api/users/me", f"/api/users/{user.id}"):
        missing = client.patch(path, json={"email": "new@example.com"}, headers=headers)
        assert missing.status_code == 403
        body = {"email": "new@example.com", "current_password": "nope nope"}
        assert client.patch(path, json=body, headers=headers).status_code == 403
    db.commit()
    assert db.scalar(select(User.email)) == "mover@example.com"
    # The name alone, or the same address again, needs no password.
    same = {"username": "moved", "email": "MOVER@example.com"}
    assert client.patch("/api/users/me", json=same, headers=headers).status_code == 200
    body = {"email": "new@example.com", "current_password": PASSWORD}
    changed = client.patch("/api/users/me", json=body, headers=headers)
    assert changed.status_code == 200
    # Pending until the link mailed to it is followed (tests/test_verification.py).
    assert changed.json()["pending_email"] == "new@example.com"


def test_the_account_form_asks_for_the_password_to_change_the_email(
    client, make_account, browser_session, db
):
    user = make_account("mover", email="mover@example.com")
    browser_session(client, user)
    page = client.get("/account").text
    assert 'name="password" type="password"' in page
    token = form_token(client, "/account")
    data = {"username": "mover", "email": "new@example.com", "csrf_token": token}
    missing = client.post("/account", data=data)
    assert missing.status_code == 422
    assert "Enter your current password to change the email address" in missing.text
    wrong = client.post("/account", data={**data, "password": "nope nope"})
    assert wrong.status_code == 422
    assert "That is not your current password" in wrong.text
    db.commit()
    assert db.scalar(select(User.email)) == "mover@example.com"
    same_email = {**data, "email": "mover@example.com", "username": "m"}
    renamed = client.post("/account", data=same_email, follow_redirects=False)
    assert renamed.status_code == 303
    done = client.post("/account", data={**data, "password": PASSWORD}, follow_redirects=False)
    assert done.status_code == 303
    db.commit()
    assert db.scalar(select(User.pending_email)) == "new@example.com"
