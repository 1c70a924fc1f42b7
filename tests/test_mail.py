"""Mail: messages enter the outbox with the change that causes them, reach a real SMTP server
(aiosmtpd), survive the server going away, are sent exactly once by concurrent senders in
threads and processes, and cannot be given extra headers."""

import logging
import subprocess
import threading
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from config import utcnow
from database import Database
from models import OutboxMessage, User
from services import outbox, verification
from services.mail import Site, deliver_due
from tests.support.accounts import PASSWORD
from tests.support.commands import inkwell
from tests.support.server import ROOT, server_env
from tests.support.smtp import link_in, smtp_settings

SITE = Site(
    name="Inkwell",
    home="https://blog.example/",
    account="https://blog.example/account",
    password_reset=lambda token: f"https://blog.example/password-reset/{token}",
    verify_email=lambda token: f"https://blog.example/verify-email/{token}",
    invitation=lambda token: f"https://blog.example/register?invitation={token}",
)


def register(client, username: str = "alice", email: str | None = None):
    body = {"username": username, "email": email or f"{username}@example.com"}
    return client.post("/api/users", json={**body, "password": PASSWORD})


def rows(db) -> list[OutboxMessage]:
    db.commit()
    db.expire_all()
    return list(db.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def queue_many(database: Database, count: int) -> None:
    with database.session(write=True) as db:
        for number in range(count):
            outbox.enqueue(
                db, to=f"reader{number}@example.com", subject=f"n{number}", text="t", html="h"
            )
        db.commit()


def test_registration_mail_reaches_the_smtp_server(client, app, settings, smtp_server, db):
    assert register(client).status_code == 201
    assert smtp_server.messages == []  # the request itself talks to no mail server
    report = deliver_due(app.state.database, smtp_settings(settings, smtp_server))
    assert report.sent == 1
    (received,) = smtp_server.messages
    assert received.recipients == ["alice@example.com"]
    message = received.message
    assert message["From"] == settings.mail_from
    assert message["To"] == "alice@example.com"
    assert "Inkwell" in received.subject
    assert message.get_content_type() == "multipart/alternative"
    assert "http://testserver/verify-email/" in received.body("plain")
    assert 'href="http://testserver/verify-email/' in received.body("html")
    (row,) = rows(db)
    assert (row.status, row.attempts) == ("sent", 1) and row.sent_at is not None
    assert message["Message-ID"] == f"<outbox-{row.id}@localhost>"


def test_a_server_that_fumbles_the_goodbye_gets_the_message_once(
    client, app, settings, smtp_server, db
):
    # The message is accepted, then QUIT gets an odd reply: the delivery stands.
    smtp_server.quit_reply = "421 Going away"
    assert register(client).status_code == 201
    report = deliver_due(app.state.database, smtp_settings(settings, smtp_server))
    assert (report.sent, report.retrying) == (1, 0)
    (row,) = rows(db)
    assert (row.status, row.attempts) == ("sent", 1)
    assert len(smtp_server.messages) == 1


def test_links_use_the_public_url_whatever_the_host(
    client, app, settings, smtp_server, monkeypatch
):
    monkeypatch.setattr(app.state.settings, "public_url", "https://blog.example")
    assert register(client).status_code == 201
    deliver_due(app.state.database, smtp_settings(settings, smtp_server))
    link = link_in(smtp_server.messages[0], "/verify-email/")
    assert link.startswith("https://blog.example/verify-email/")


def test_no_mail_without_the_change(client, make_user, db):
    """The message is written in the change's transaction: a refused registration leaves none."""
    make_user("alice")
    assert register(client, "alice", "other@example.com").status_code == 409
    assert rows(db) == []


def test_without_smtp_host_mail_becomes_eml_files(client, app, settings, caplog):
    assert register(client).status_code == 201
    with caplog.at_level(logging.INFO, logger="inkwell.mail"):
        assert deliver_due(app.state.database, settings).sent == 1
    (path,) = (settings.outbox_dir).glob("*.eml")
    assert str(path) in caplog.text
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "alice@example.com"


def test_a_message_waits_out_the_mail_server_and_arrives_once(
    client, app, settings, smtp_server, clock, db, caplog
):
    mail_settings = smtp_settings(settings, smtp_server)
    database = app.state.database
    assert register(client).status_code == 201
    smtp_server.stop()
    with caplog.at_level(logging.WARNING, logger="inkwell.mail"):
        assert deliver_due(database, mail_settings).retrying == 1
    assert "attempt 1 failed" in caplog.text
    (row,) = rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == utcnow() + outbox.FIRST_RETRY
    smtp_server.start()
    # Not due yet: the backoff holds it back even though the server is there again.
    assert deliver_due(database, mail_settings).sent == 0
    clock.advance(seconds=29)
    assert deliver_due(database, mail_settings).sent == 0
    clock.advance(seconds=2)
    assert deliver_due(database, mail_settings).sent == 1
    assert deliver_due(database, mail_settings).sent == 0
    assert [m.recipients for m in smtp_server.messages] == [["alice@example.com"]]
    assert rows(db)[0].status == "sent"


def test_retries_back_off_and_then_give_up(app, settings, smtp_server, clock, db, caplog):
    smtp_server.stop()
    mail_settings = smtp_settings(settings, smtp_server)
    queue_many(app.state.database, 1)
    waits = []
    with caplog.at_level(logging.WARNING, logger="inkwell.mail"):
        while (row := rows(db)[0]).status == "pending":
            waits.append(row.next_attempt_at - utcnow())
            clock.moment = row.next_attempt_at
            deliver_due(app.state.database, mail_settings)
    assert [wait.total_seconds() for wait in waits[1:6]] == [30, 60, 120, 240, 480]
    assert max(waits) == outbox.LONGEST_RETRY
    assert row.status == "failed"
    assert utcnow() <= row.give_up_at
    assert "Gave up on message" in caplog.text


def test_a_dead_senders_claim_runs_out(app, settings, smtp_server, clock):
    mail_settings = smtp_settings(settings, smtp_server)
    queue_many(app.state.database, 3)
    with app.state.database.session(write=True) as db:
        assert len(outbox.claim_due(db, sender="crashed")) == 3  # and never reports back
    assert deliver_due(app.state.database, mail_settings).sent == 0
    clock.advance(seconds=outbox.CLAIM_LEASE.total_seconds() + 1)
    assert deliver_due(app.state.database, mail_settings).sent == 3
    assert len(smtp_server.messages) == 3


def assert_each_sent_once(smtp_server, db, count: int) -> None:
    ids = [received.message["Message-ID"] for received in smtp_server.messages]
    assert len(ids) == count
    assert len(set(ids)) == count
    statuses = db.execute(
        select(OutboxMessage.status, OutboxMessage.attempts, func.count()).group_by(
            OutboxMessage.status, OutboxMessage.attempts
        )
    ).all()
    assert statuses == [("sent", 1, count)]


def test_concurrent_senders_send_each_message_once(app, settings, smtp_server, db):
    """Four senders with engines of their own (as four processes would have) at once."""
    count = 120
    queue_many(app.state.database, count)
    mail_settings = smtp_settings(settings, smtp_server)
    databases = [Database(settings.database_url) for _ in range(4)]
    reports = []
    start = threading.Barrier(len(databases))

    def send(database: Database) -> None:
        start.wait()
        reports.append(deliver_due(database, mail_settings))

    threads = [threading.Thread(target=send, args=(database,)) for database in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        database.dispose()
    assert sum(report.sent for report in reports) == count
    assert sorted(i for report in reports for i in report.ids) == sorted(set(range(1, count + 1)))
    db.commit()
    assert_each_sent_once(smtp_server, db, count)


def test_send_mail_commands_in_two_processes_send_each_message_once(
    app, settings, smtp_server, db, tmp_path
):
    count = 200
    queue_many(app.state.database, count)
    env = server_env(settings.database_url, tmp_path / "media", **smtp_server.env)
    processes = [
        subprocess.Popen(inkwell("send-mail"), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    sent = [int(output.split()[1].rstrip(",")) for output in outputs]
    assert sum(sent) == count, outputs
    db.commit()
    assert_each_sent_once(smtp_server, db, count)


def test_a_username_cannot_add_a_header(app, settings, smtp_server, make_user, db):
    """Usernames are checked on the way in; one with CR/LF (from before that, or written by
    hand) still cannot add a header or a recipient."""
    user = make_user("eve\r\nBcc: victim@example.com\r\nX-Injected: yes", email="eve@example.com")
    with app.state.database.session(write=True) as session:
        verification.send_link(
            session, user=session.get(User, user.id), email="eve@example.com", site=SITE
        )
        session.commit()
    assert deliver_due(app.state.database, smtp_settings(settings, smtp_server)).sent == 1
    (received,) = smtp_server.messages
    assert received.recipients == ["eve@example.com"]
    message = received.message
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "\n" not in received.subject and "Bcc: victim@example.com" in received.subject


def test_a_header_with_a_line_break_is_refused_not_sent(app, settings, smtp_server, db):
    """What enqueue does not flatten (an address), the message itself refuses: permanently."""
    with app.state.database.session(write=True) as session:
        outbox.enqueue(
            session, to="a@example.com\r\nBcc: b@example.com", subject="s", text="t", html="h"
        )
        session.commit()
    report = deliver_due(app.state.database, smtp_settings(settings, smtp_server))
    assert (report.sent, report.failed) == (0, 1)
    assert smtp_server.messages == []
    assert rows(db)[0].status == "failed"


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_settings_choose_the_port_and_inkwell_check_wants_smtp(security):
    from config import Settings, deployment_problems

    settings = Settings(smtp_security=security)
    assert settings.smtp_port_or_default == {"none": 25, "starttls": 587, "tls": 465}[security]
    problems = deployment_problems(settings)
    assert any("SMTP_HOST" in problem for problem in problems)
    assert any("PUBLIC_URL" in problem for problem in problems)


@pytest.mark.server
def test_two_workers_send_each_message_once_and_wait_out_the_mail_server(
    empty_database_url, tmp_path, smtp_server
):
    """Two uvicorn workers, each with its sender thread, on one database and one clock."""
    import httpx

    from tests.support.clock import ClockFile
    from tests.support.server import migrate
    from tests.support.server_group import ServerGroup
    from tests.support.smtp import wait_until

    migrate(empty_database_url)
    clock = ClockFile(tmp_path / "clock")
    env = {**smtp_server.env, "MAIL_POLL_SECONDS": "0.1"}
    database = Database(empty_database_url)

    def attempts() -> list[tuple[str, int]]:
        with database.session(write=False) as db:
            query = select(OutboxMessage.status, OutboxMessage.attempts).order_by(OutboxMessage.id)
            return [tuple(row) for row in db.execute(query)]

    def last_error_of_latest() -> str | None:
        with database.session(write=False) as db:
            query = select(OutboxMessage.last_error).order_by(OutboxMessage.id.desc()).limit(1)
            return db.scalar(query)

    try:
        with ServerGroup(
            empty_database_url, tmp_path / "media", 2, clock.path, extra_env=env
        ) as server:
            for number in range(6):
                body = {"username": f"reader{number}", "email": f"reader{number}@example.com"}
                response = httpx.post(
                    f"{server.base_url}/api/users", json={**body, "password": PASSWORD}
                )
                assert response.status_code == 201, response.text
            smtp_server.wait_for(6)
            wait_until(lambda: attempts() == [("sent", 1)] * 6)
            smtp_server.stop()
            reset = httpx.post(
                f"{server.base_url}/api/password-reset", json={"email": "reader0@example.com"}
            )
            assert reset.status_code == 202
            # Not merely claimed ("pending", 1 from the moment a sender takes it, before it
            # has tried the stopped server): the failed attempt is on record.
            wait_until(lambda: last_error_of_latest() is not None)
            assert attempts()[-1] == ("pending", 1)
            smtp_server.start()
            clock.advance(seconds=outbox.FIRST_RETRY.total_seconds() + 1)
            smtp_server.wait_for(7)
            wait_until(lambda: attempts()[-1] == ("sent", 2))
        final = attempts()
    finally:
        database.dispose()
    assert final == [("sent", 1)] * 6 + [("sent", 2)]
    ids = [received.message["Message-ID"] for received in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 7
    assert "Reset" in smtp_server.messages[-1].subject
