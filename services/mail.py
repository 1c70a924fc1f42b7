"""Mail: messages rendered from templates/mail into the outbox, and the sender that delivers
them (SMTP, or .eml files in OUTBOX_DIR when no SMTP_HOST is set), retrying with backoff.

Nothing here runs inside a request: a request only adds to the outbox (services.outbox), and
the sender, a thread of each app process or `inkwell send-mail`, talks to the mail server with
no transaction open, so neither a slow nor a dead mail server holds up a page or a lock.
"""

import logging
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session

from config import PROJECT_ROOT, Settings
from database import Database
from services import outbox
from services.outbox import Claimed

logger = logging.getLogger("inkwell.mail")

MAIL_TEMPLATE_DIR = PROJECT_ROOT / "templates" / "mail"
# Plain text stays as typed; the HTML alternative is escaped like every page.
environment = Environment(
    loader=FileSystemLoader(MAIL_TEMPLATE_DIR),
    autoescape=select_autoescape(["html"], default_for_string=False, default=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)
BATCH_SIZE = 20


@dataclass(frozen=True)
class Site:
    """What a message says about the site: its name and absolute links (made by the web
    layer, which knows the routes and the public address)."""

    name: str
    home: str
    account: str
    password_reset: Callable[[str], str]
    verify_email: Callable[[str], str]
    invitation: Callable[[str], str]


def queue(
    db: Session,
    *,
    to: str,
    template: str,
    subject: str,
    site: Site,
    give_up_at: datetime | None = None,
    **context: Any,
) -> None:
    """Render `template` (.txt and .html) and add the message to the outbox, in the
    session's transaction."""
    text, html = render(template, site=site, **context)
    outbox.enqueue(db, to=to, subject=subject, text=text, html=html, give_up_at=give_up_at)


def render(template: str, **context: Any) -> tuple[str, str]:
    """The plain-text and HTML bodies of `template`."""
    text = environment.get_template(f"{template}.txt").render(context)
    html = environment.get_template(f"{template}.html").render(context)
    return text, html


def build_message(claimed: Claimed, *, mail_from: str) -> EmailMessage:
    """The message as mailed. EmailMessage's default policy refuses a line break in any
    header (ValueError), so nothing a user typed can add a header."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = claimed.recipient
    message["Subject"] = claimed.subject
    message["Date"] = format_datetime(claimed.created_at)
    # The same id on every attempt, so a receiver can recognise a repeat.
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<outbox-{claimed.id}@{domain}>"
    message.set_content(claimed.body_text)
    message.add_alternative(claimed.body_html, subtype="html")
    return message


# ---------------------------------------------------------------- transports


class Transport(Protocol):
    def send(self, message: EmailMessage, *, recipient: str) -> None: ...


class UndeliverableError(Exception):
    """The message can never be delivered as it is: no point trying again."""


@dataclass(frozen=True)
class SmtpTransport:
    """One SMTP conversation per message, with the security the settings ask for."""

    host: str
    port: int
    security: str
    username: str
    password: str
    timeout: float
    mail_from: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "SmtpTransport":
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port_or_default,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
            mail_from=settings.mail_from,
        )

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            context = ssl.create_default_context()
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, message: EmailMessage, *, recipient: str) -> None:
        smtp = self._connect()
        try:
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message, from_addr=parseaddr(self.mail_from)[1], to_addrs=[recipient])
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise UndeliverableError(str(exc)) from exc
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code >= 500:
                raise UndeliverableError(str(exc)) from exc
            raise
        finally:
            _say_goodbye(smtp)


def _say_goodbye(smtp: smtplib.SMTP) -> None:
    """End the conversation. Once the server has accepted the message, an odd reply to QUIT
    or a connection dropped before it must not fail the delivery: the message would be sent
    again, and the reader would get it twice (what `with smtplib.SMTP()` does on leaving)."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException) as exc:
        logger.info("The mail server fumbled the end of the conversation: %s", exc)
    finally:
        smtp.close()


@dataclass(frozen=True)
class DirectoryTransport:
    """Development: each message becomes an .eml file, its path logged."""

    directory: Path

    def send(self, message: EmailMessage, *, recipient: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").partition("@")[0]
        path = self.directory / f"{name}.eml"
        partial = path.with_suffix(".partial")
        partial.write_bytes(message.as_bytes())
        partial.replace(path)
        logger.info("Mail to %s written to %s", recipient, path)


def transport_for(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport.from_settings(settings)
    return DirectoryTransport(settings.outbox_dir)


# ---------------------------------------------------------------- delivery


@dataclass
class Delivery:
    """What one round of delivery did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    ids: list[int] = field(default_factory=list)


def _deliver_one(
    database: Database, claimed: Claimed, transport: Transport, mail_from: str, report: Delivery
) -> None:
    try:
        transport.send(build_message(claimed, mail_from=mail_from), recipient=claimed.recipient)
    except (UndeliverableError, ValueError) as exc:
        _record_failure(database, claimed, exc, report, permanent=True)
    except (OSError, smtplib.SMTPException) as exc:
        _record_failure(database, claimed, exc, report, permanent=False)
    else:
        with database.session(write=True) as db:
            if not outbox.mark_sent(db, claimed):
                logger.warning("Message %d was sent after its claim had run out", claimed.id)
        report.sent += 1
        report.ids.append(claimed.id)


def _record_failure(
    database: Database, claimed: Claimed, exc: Exception, report: Delivery, *, permanent: bool
) -> None:
    error = f"{type(exc).__name__}: {exc}"
    with database.session(write=True) as db:
        status = outbox.mark_failed_attempt(db, claimed, error, permanent=permanent)
    if status == "failed":
        report.failed += 1
        logger.error(
            "Gave up on message %d after %d attempts: %s", claimed.id, claimed.attempts, error
        )
    else:
        report.retrying += 1
        logger.warning("Message %d, attempt %d failed: %s", claimed.id, claimed.attempts, error)


def deliver_due(
    database: Database,
    settings: Settings,
    *,
    transport: Transport | None = None,
    sender: str | None = None,
) -> Delivery:
    """Deliver every message that is due now, a batch claimed at a time, each exactly once
    across every sender. Failed attempts are rescheduled (or given up on) as they happen."""
    transport = transport or transport_for(settings)
    sender = sender or outbox.new_sender_id()
    report = Delivery()
    while True:
        with database.session(write=True) as db:
            batch = outbox.claim_due(db, sender=sender, limit=BATCH_SIZE)
        for claimed in batch:
            _deliver_one(database, claimed, transport, settings.mail_from, report)
        if len(batch) < BATCH_SIZE:
            return report


class MailSender:
    """A thread of the app process that delivers due mail every `interval` seconds."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.interval = settings.mail_poll_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mail-sender", daemon=True)

    def start(self) -> "MailSender":
        self._thread.start()
        return self

    def _run(self) -> None:
        sender = outbox.new_sender_id()
        while not self._stopping.is_set():
            try:
                deliver_due(self.database, self.settings, sender=sender)
            except Exception:  # a database hiccup must not end the thread for good
                logger.exception("Delivering mail failed; trying again shortly")
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.settings.smtp_timeout_seconds + 5)
