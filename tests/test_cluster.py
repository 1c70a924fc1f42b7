"""Several app hosts behind nginx, each in a network namespace of its own, sharing only
PostgreSQL: one site whichever host answers each request."""

import itertools
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.accounts import PASSWORD, csrf_from
from tests.support.cluster import Cluster, missing_requirement, running_cluster

pytestmark = pytest.mark.skipif(
    missing_requirement() is not None, reason=str(missing_requirement())
)

_names = itertools.count(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as started:
        yield started


def form_post(
    client: httpx.Client, page: str, target: str, fields: dict[str, str]
) -> httpx.Response:
    """Fetch the form's page (from whichever host), then submit it (most likely to the other)."""
    token = csrf_from(client.get(page).text)
    return client.post(target, data={**fields, "csrf_token": token})


def register(client: httpx.Client) -> str:
    username = f"writer{next(_names)}"
    fields = {
        "username": username,
        "email": f"{username}@example.com",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
    }
    response = form_post(client, "/register", "/register", fields)
    assert response.status_code == 303, response.text
    return username


def test_a_session_works_whichever_host_answers(cluster: Cluster) -> None:
    with cluster.client() as client:
        answered_before = len(cluster.answered())
        username = register(client)
        title = f"Written across hosts by {username}"
        created = form_post(
            client,
            "/posts/new",
            "/posts/new",
            {"title": title, "content": "Every request may land elsewhere.", "status": "published"},
        )
        assert created.status_code == 303, created.text
        post_path = created.headers["location"]
        post_id = re.search(r"/posts/(\d+)", post_path).group(1)
        edited = form_post(
            client,
            f"/posts/{post_id}/edit",
            f"/posts/{post_id}/edit",
            {"title": title, "content": "Edited on one host, read on the other.",
             "status": "published", "version": "1"},
        )  # fmt: skip
        assert edited.status_code == 303, edited.text
        for _ in range(2):  # once from each host
            page = client.get(post_path)
            assert page.status_code == 200
            assert "Edited on one host, read on the other." in page.text
            assert "Log out" in page.text or username in page.text
        # Search highlights the words it matched: look for the link to the post instead.
        found = client.get("/search", params={"q": "across hosts"}).text
        assert f"/posts/{post_id}/" in found
        assert title in client.get("/feed.xml").text
        answered = cluster.answered()[answered_before:]
    assert {host for _, _, host in answered} == cluster.app_addresses
    # A form's page came from one host and its submission went to the other: the CSRF token
    # and the session are the same on every host.
    form_hosts = {path: host for method, path, host in answered if method == "GET"}
    assert any(
        method == "POST" and form_hosts.get(path) not in (None, host)
        for method, path, host in answered
    )


def test_login_throttling_holds_across_hosts(cluster: Cluster) -> None:
    with cluster.client() as client:
        username = register(client)
    with cluster.client() as attacker:
        token = csrf_from(attacker.get("/login").text)
        answered_before = len(cluster.answered())
        wrong = {"username": username, "password": "wrong guess", "csrf_token": token}
        refused = [attacker.post("/login", data=wrong) for _ in range(6)]
    # Wrong passwords are 400; the sixth is refused before the password is even checked.
    assert [response.status_code for response in refused] == [400] * 5 + [429]
    hosts = {host for _, path, host in cluster.answered()[answered_before:] if path == "/login"}
    assert hosts == cluster.app_addresses
