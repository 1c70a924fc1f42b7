"""Several app hosts behind nginx, each in a network namespace of its own, sharing only
PostgreSQL (and, for the tests, one movable clock and one mail server): one site whichever
host answers each request."""

import itertools
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text

from tests.support.accounts import PASSWORD, csrf_from
from tests.support.clock import ClockFile
from tests.support.cluster import (
    Cluster,
    bridge_address,
    missing_requirement,
    run_with_fault,
    running_cluster,
    served_by,
)
from tests.support.images import varied_png
from tests.support.load import register as register_over_api
from tests.support.smtp import MailCatcher, wait_until
from tests.support.two_factor import code_at, secret_from

pytestmark = pytest.mark.skipif(
    missing_requirement() is not None, reason=str(missing_requirement())
)

_names = itertools.count(1)
LOAD_SECONDS = float(os.environ.get("INKWELL_CLUSTER_LOAD_SECONDS", "6"))


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> ClockFile:
    """The time of every app host, moved by the tests. It starts now, not at a fixed moment:
    the clients judge the cookies' expiry dates by the real date."""
    folder = tmp_path_factory.mktemp("cluster-clock")
    return ClockFile(folder / "now", start=datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def mail() -> Iterator[MailCatcher]:
    """One mail server for every host, on every address of the machine: the hosts reach it
    at the bridge's."""
    catcher = MailCatcher()
    catcher.host = "0.0.0.0"
    catcher.start()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="module")
def cluster(clock: ClockFile, mail: MailCatcher) -> Iterator[Cluster]:
    settings = {
        "CLOCK_FILE": str(clock.path),
        "SMTP_HOST": bridge_address(),
        "SMTP_PORT": str(mail.port),
        "SMTP_SECURITY": "none",
        "MAIL_POLL_SECONDS": "0.2",
    }
    with running_cluster(*(f"{key}={value}" for key, value in settings.items())) as started:
        yield started


def new_registrations(clock: ClockFile) -> None:
    """Past the hour that counts the registrations from one address (every client here
    comes from the same one)."""
    clock.advance(hours=1, seconds=1)


@pytest.fixture(scope="module")
def load_tokens(cluster: Cluster, clock: ClockFile) -> list[str]:
    """API tokens of the writers of every load run."""
    new_registrations(clock)
    return [
        register_over_api(cluster.url, f"loadwriter{n}", verify=cluster.trusted()) for n in range(4)
    ]


def form_post(
    client: httpx.Client, page: str, target: str, fields: dict[str, str]
) -> httpx.Response:
    """Fetch the form's page (from whichever host), then submit it (most likely to the other)."""
    token = csrf_from(client.get(page).text)
    return client.post(target, data={**fields, "csrf_token": token})


def register(client: httpx.Client, clock: ClockFile) -> str:
    new_registrations(clock)
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


def test_a_session_works_whichever_host_answers(cluster: Cluster, clock: ClockFile) -> None:
    with cluster.client() as client:
        answered_before = len(cluster.answered())
        username = register(client, clock)
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


def test_login_throttling_holds_across_hosts(cluster: Cluster, clock: ClockFile) -> None:
    with cluster.client() as client:
        username = register(client, clock)
    with cluster.client() as attacker:
        token = csrf_from(attacker.get("/login").text)
        answered_before = len(cluster.answered())
        wrong = {"username": username, "password": "wrong guess", "csrf_token": token}
        refused = [attacker.post("/login", data=wrong) for _ in range(6)]
    # Wrong passwords are 400; the sixth is refused before the password is even checked.
    assert [response.status_code for response in refused] == [400] * 5 + [429]
    hosts = {host for _, path, host in cluster.answered()[answered_before:] if path == "/login"}
    assert hosts == cluster.app_addresses


def test_pictures_uploaded_through_one_host_are_served_by_the_other(
    cluster: Cluster, clock: ClockFile
) -> None:
    with cluster.client() as client:
        register(client, clock)
        token = csrf_from(client.get("/account").text)
        avatar = client.post(
            "/account/picture",
            data={"csrf_token": token},
            files={"picture": ("me.png", varied_png("avatar across hosts"), "image/png")},
        )
        assert avatar.status_code == 303, avatar.text
        account = client.get("/account")
        avatar_path = re.search(r'src="[^"]*(/media/profile_pics/[^"]+)"', account.text).group(1)
        token = csrf_from(client.get("/account/media").text)
        image = client.post(
            "/account/media/upload",
            data={"csrf_token": token},
            files={"file": ("figure.png", varied_png("figure across hosts"), "image/png")},
        )
        assert image.status_code == 201, image.text
        image_path = httpx.URL(image.json()["url"]).path
        # Stored by one host, the same bytes from each (neither has the file on its disk).
        for path in (avatar_path, image_path):
            answers = cluster.get_from_each(client, path)
            assert all(answer.status_code == 200 for answer in answers.values()), path
            types = {answer.headers["content-type"] for answer in answers.values()}
            assert len(types) == 1 and types.pop().startswith("image/"), path
            assert len({answer.content for answer in answers.values()}) == 1


def test_a_review_link_made_on_one_host_opens_on_the_other(
    cluster: Cluster, clock: ClockFile
) -> None:
    headers = {"Authorization": f"Bearer {register_api(cluster, clock, 'reviewed')}"}
    with cluster.client() as client:
        draft = client.post(
            "/api/posts",
            json={"title": "Reviewed across hosts", "content": "Not out yet.", "status": "draft"},
            headers=headers,
        )
        assert draft.status_code == 201, draft.text
        made = client.post(f"/api/posts/{draft.json()['id']}/review-links", headers=headers)
        assert made.status_code == 201, made.text
        link = httpx.URL(made.json()["url"]).path
        page = cluster.get_elsewhere(client, link, not_from=served_by(made))
        assert page.status_code == 200
        assert "Reviewed across hosts" in page.text


def test_an_edit_through_one_host_is_seen_at_once_on_the_others_cached_page(
    cluster: Cluster, clock: ClockFile
) -> None:
    headers = {"Authorization": f"Bearer {register_api(cluster, clock, 'cached')}"}
    with cluster.client() as author, cluster.client() as reader:
        created = author.post(
            "/api/posts",
            json={
                "title": "Cached on every host",
                "content": "First words.",
                "status": "published",
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        post_id = created.json()["id"]
        path = reader.get(f"/posts/{post_id}", follow_redirects=True).url.path
        # Each host now has the anonymous page (and the home page) in its cache.
        hosts = set()
        for _ in range(4):
            for page in (path, "/"):
                response = reader.get(page)
                assert "Cached on every host" in response.text
                hosts.add(served_by(response))
        assert hosts == cluster.app_addresses
        edited = author.patch(
            f"/api/posts/{post_id}",
            json={"content": "Second words."},
            headers=headers,
        )
        assert edited.status_code == 200, edited.text
        editor = served_by(edited)
        fresh = cluster.get_elsewhere(reader, path, not_from=editor)
        assert "Second words." in fresh.text and "First words." not in fresh.text
        again = cluster.get_elsewhere(reader, path, not_from=served_by(fresh))
        assert "Second words." in again.text


def test_two_factor_sign_in_across_hosts(cluster: Cluster, clock: ClockFile) -> None:
    with cluster.client() as client:
        username = register(client, clock)
        token = csrf_from(client.get("/account/two-factor").text)
        started = client.post(
            "/account/two-factor/setup", data={"csrf_token": token}, follow_redirects=True
        )
        assert started.status_code == 200, started.text
        secret = secret_from(started.text)
        code = code_at(secret, clock.moment)
        confirmed = client.post(
            "/account/two-factor/confirm",
            data={"code": code, "csrf_token": token},
            follow_redirects=True,
        )
        assert confirmed.status_code == 200 and "recovery codes" in confirmed.text
        assert "<strong>On.</strong>" in client.get("/account").text
        logged_out = form_post(client, "/account", "/logout", {})
        assert logged_out.status_code == 303
        # The code just used is spent: the next login is half a minute later.
        clock.advance(seconds=30)
        password_step = form_post(
            client, "/login", "/login", {"username": username, "password": PASSWORD, "next": ""}
        )
        assert password_step.status_code == 303, password_step.text
        assert client.get("/account", follow_redirects=False).status_code == 303
        code_page = cluster.get_elsewhere(client, "/login/code", not_from=served_by(password_step))
        assert code_page.status_code == 200, code_page.text
        # The code goes to the host that did not check the password.
        code_step = cluster.post_to(
            cluster.other_than(served_by(password_step)),
            client,
            "/login/code",
            data={"code": code_at(secret, clock.moment), "csrf_token": csrf_from(code_page.text)},
        )
        assert code_step.status_code == 303, code_step.text
        for _ in range(2):  # signed in on both hosts
            assert client.get("/account", follow_redirects=False).status_code == 200


def test_a_scheduled_post_comes_out_on_every_host_at_its_moment(
    cluster: Cluster, clock: ClockFile
) -> None:
    headers = {"Authorization": f"Bearer {register_api(cluster, clock, 'scheduler')}"}
    title = f"Out tomorrow {next(_names)}"
    moment = clock.moment + timedelta(days=1)
    with cluster.client() as author, cluster.client() as reader:
        created = author.post(
            "/api/posts",
            json={"title": title, "content": "Not yet.", "status": "scheduled",
                  "published_at": moment.isoformat()},
            headers=headers,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        post_path = httpx.URL(created.json()["url"]).path

        def shown_by_each_host() -> dict[str, list[bool]]:
            """host -> whether its home page, the post's page and its feed show the post."""
            shown: dict[str, list[bool]] = {host: [] for host in cluster.app_addresses}
            for path in ("/", post_path, "/feed.xml"):
                for host, response in cluster.get_from_each(reader, path).items():
                    shown[host].append(response.status_code == 200 and title in response.text)
            return shown

        # Each host has now answered (and cached) each page while the post was not out.
        before = shown_by_each_host()
        assert all(flags == [False, False, False] for flags in before.values()), before
        clock.set(moment + timedelta(seconds=1))
        after = shown_by_each_host()
        assert all(flags == [True, True, True] for flags in after.values()), after


def test_each_mail_goes_out_once_whichever_hosts_send_it(
    cluster: Cluster, clock: ClockFile, mail: MailCatcher
) -> None:
    addresses = []
    # Registrations through the balancer; reset links asked of each host in turn.
    for host in sorted(cluster.app_addresses) * 2:
        # Each registration moves every host's clock past the hour: a claim on a message
        # still being sent would run out with it and let a second host send it again, so
        # the clock moves only once the mail asked for so far has gone.
        wait_until(lambda: not unsent_mail(cluster, addresses))
        with cluster.client() as client:
            username = register(client, clock)
            form_post(client, "/account", "/logout", {})
            address = f"{username}@example.com"
            token = csrf_from(client.get("/password-reset").text)
            asked = cluster.post_to(
                host, client, "/password-reset", data={"email": address, "csrf_token": token}
            )
            assert asked.status_code == 303, asked.text
            addresses.append(address)
    # A verification link and a reset link each; then nothing is left to send, so no second
    # copy can still be on its way.
    wait_until(lambda: all(len(mail.to(address)) >= 2 for address in addresses))
    wait_until(lambda: not unsent_mail(cluster, addresses))
    for address in addresses:
        subjects = sorted(received.subject for received in mail.to(address))
        assert len(subjects) == 2, (address, subjects)


def unsent_mail(cluster: Cluster, addresses: list[str]) -> int:
    if not addresses:
        return 0
    engine = create_engine(cluster.database_url())
    query = text("SELECT count(*) FROM outbox WHERE recipient IN :to AND status <> 'sent'")
    try:
        with engine.connect() as connection:
            return connection.execute(
                query.bindparams(bindparam("to", expanding=True)), {"to": addresses}
            ).scalar_one()
    finally:
        engine.dispose()


def register_api(cluster: Cluster, clock: ClockFile, name: str) -> str:
    new_registrations(clock)
    return register_over_api(cluster.url, f"{name}{next(_names)}", verify=cluster.trusted())


# ---------------------------------------------------------------- faults under load
# INKWELL_CLUSTER_LOAD_SECONDS sets each run's length (the README's figures are from 60 s).


def test_kill_9_of_an_app_host_fails_only_what_was_in_flight_on_it(
    cluster: Cluster, load_tokens: list[str]
) -> None:
    def power_cut() -> None:
        cluster.command("kill", "app1")
        cluster.command("start", "app1")

    run = run_with_fault(cluster, load_tokens, power_cut, seconds=LOAD_SECONDS)
    print(run.summary("kill -9 of app1"))
    assert not run.problems, run.problems[:10]
    assert not run.unexpected, run.unexpected[:10]
    assert run.found == run.ledger.acknowledged_writes
    # Reads cut off on the killed host were retried on the other; writes were not (a POST
    # may have taken effect), so only requests in flight at that moment could fail.
    assert run.ledger.errors <= run.in_flight_at_fault


def test_a_rolling_restart_of_every_app_host_loses_no_request(
    cluster: Cluster, load_tokens: list[str]
) -> None:
    def rolling_deploy() -> None:
        for host in ("app1", "app2"):
            cluster.command("deploy", host)

    run = run_with_fault(cluster, load_tokens, rolling_deploy, seconds=LOAD_SECONDS)
    print(run.summary("rolling restart"))
    assert not run.problems, run.problems[:10]
    assert not run.ledger.problems, run.ledger.problems[:10]
    assert run.ledger.errors == 0
    assert run.found == run.ledger.acknowledged_writes


def test_a_database_restart_loses_no_acknowledged_write(
    cluster: Cluster, load_tokens: list[str]
) -> None:
    run = run_with_fault(
        cluster, load_tokens, lambda: cluster.command("restart-db"), seconds=LOAD_SECONDS
    )
    print(run.summary("PostgreSQL restart"))
    assert not run.problems, run.problems[:10]
    # While the database is away the hosts answer 503 with Retry-After; nothing else fails.
    assert not run.unexpected, run.unexpected[:10]
    assert run.ledger.errors == run.ledger.statuses[503]
    assert run.found == run.ledger.acknowledged_writes
