"""A real SMTP server for tests: aiosmtpd on a loopback port, keeping what it receives.

It can be stopped and started again on the same port, to play a mail server that goes away
for a while. The messages it received are parsed with the standard library's email package.
"""

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.pg import free_port

WAIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class Received:
    """One message as the server received it: the envelope and the parsed message."""

    mail_from: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        return part.get_content()


class _Handler:
    def __init__(self, catcher: "MailCatcher") -> None:
        self.catcher = catcher

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.catcher._add(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        return self.catcher.quit_reply


class MailCatcher:
    """aiosmtpd on 127.0.0.1:`port`; `messages` is everything received so far."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[Received] = []
        # What the server answers to QUIT; a test may make it misbehave.
        self.quit_reply = "221 Bye"
        self._changed = threading.Condition()
        self._controller: Any = None

    def start(self) -> "MailCatcher":
        assert self._controller is None, "already running"
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _add(self, received: Received) -> None:
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT_TIMEOUT_S) -> list[Received]:
        """Wait until `count` messages have arrived (from another process); return them."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
        assert arrived, f"{len(self.messages)} of {count} messages arrived"
        return list(self.messages)

    def to(self, address: str) -> list[Received]:
        return [received for received in self.messages if address in received.recipients]

    @property
    def env(self) -> dict[str, str]:
        """The settings that point the app at this server."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_SECURITY": "none"}


def smtp_settings(settings: Any, catcher: MailCatcher) -> Any:
    """`settings` with mail going to `catcher`."""
    update = {"smtp_host": catcher.host, "smtp_port": catcher.port, "smtp_security": "none"}
    return settings.model_copy(update=update)


LINK = re.compile(r"https?://\S+")


def link_in(received: Received, path_part: str) -> str:
    """The one link of the plain-text body whose path holds `path_part`."""
    links = [link for link in LINK.findall(received.body()) if path_part in link]
    assert len(links) == 1, received.body()
    return links[0]


def token_in(received: Received, path_part: str) -> str:
    """The token of that link: its last path segment."""
    return link_in(received, path_part).rstrip("/").rsplit("/", 1)[1]


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT_S) -> None:
    """Wait for something another process does (a sender's attempt), checking every 50 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)
