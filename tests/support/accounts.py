"""Accounts and forms as a test drives them: the password, CSRF tokens, logging in."""

import re

from fastapi.testclient import TestClient

# Long enough, and not on the common-passwords list the app refuses.
PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def form_token(client: TestClient, path: str) -> str:
    """GET a page with a form and return the CSRF token it carries."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return csrf_from(response.text)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    """Log in through the real form."""
    token = form_token(client, "/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
