"""Application settings, read from the environment and an optional `.env` file."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-deploy"
MIN_SECRET_KEY_LENGTH = 32


@dataclass(frozen=True)
class NewAccountLimit:
    """How many posts an account may write while it is new."""

    posts: int
    period: timedelta


class Settings(BaseSettings):
    """Everything that differs between a laptop, CI and production."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./blog.db"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    debug: bool = True
    # Mark cookies Secure; turn on whenever the site is served over https.
    secure_cookies: bool = False
    media_dir: Path = PROJECT_ROOT / "media"
    # Where uploads are kept: files in media_dir, or rows of the database (several app hosts
    # on one PostgreSQL then share nothing else).
    media_storage: Literal["local", "database"] = "local"
    # Post images per author, and the bytes all of them may take (every stored width counted).
    media_max_files_per_user: int = Field(default=500, ge=1)
    media_max_bytes_per_user: int = Field(default=200 * 1024 * 1024, ge=1)
    page_size: int = Field(default=10, ge=1, le=100)
    site_name: str = "Inkwell"
    # Stray picture files are removed at startup once older than this (a younger one may
    # belong to an upload another worker is committing right now).
    upload_orphan_grace_seconds: float = Field(default=60, ge=0)
    # Host headers the site answers to (comma-separated in the environment); others get 400.
    allowed_hosts: Annotated[list[str], NoDecode] = ["localhost", "127.0.0.1", "testserver"]
    # Who may register: `open` (anyone), `invite` (only with an invitation an admin had
    # mailed from /admin/invitations) or `closed` (nobody; `inkwell create-admin` still works).
    registration_mode: Literal["open", "invite", "closed"] = "open"
    # New accounts (not admins) may write this many posts, imports included, until they are
    # NEW_ACCOUNT_PERIOD_HOURS old: spam comes from accounts made for it, and an author's
    # first day seldom needs more. A period of 0 lifts the limit.
    new_account_post_limit: int = Field(default=5, ge=0)
    new_account_period_hours: float = Field(default=24, ge=0)
    # For test harnesses only: read the current time from this file (ISO 8601) instead of
    # the system clock, so that tests can move time in every worker process at once.
    clock_file: Path | None = None

    # Mail. Without SMTP_HOST (development) each message is written to OUTBOX_DIR as an
    # .eml file instead, so the site works with no mail server.
    smtp_host: str = ""
    # Default: 465 for `tls`, 587 for `starttls`, 25 for `none`.
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    mail_from: str = "Inkwell <inkwell@localhost>"
    outbox_dir: Path = PROJECT_ROOT / "outbox"
    # How often each app process looks for mail that is due (0: never; `inkwell send-mail`
    # then delivers it, from cron say).
    mail_poll_seconds: float = Field(default=5, ge=0)
    # The site's public address (https://blog.example.com), for links in mail. Unset, links
    # follow the Host of the request that caused the message (ALLOWED_HOSTS bounds it).
    public_url: str = ""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port or {"tls": 465, "starttls": 587, "none": 25}[self.smtp_security]

    @property
    def new_account_limit(self) -> "NewAccountLimit":
        return NewAccountLimit(
            self.new_account_post_limit, timedelta(hours=self.new_account_period_hours)
        )

    @property
    def avatar_dir(self) -> Path:
        return self.media_dir / "profile_pics"


def secret_key_problem(settings: Settings) -> str | None:
    """Why the secret key is unfit for production, if it is."""
    if settings.secret_key in ("", DEVELOPMENT_SECRET_KEY):
        return "SECRET_KEY is empty or the development default"
    if len(settings.secret_key) < MIN_SECRET_KEY_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters"
    return None


def startup_problem(settings: Settings) -> str | None:
    """Why the app must refuse to start with these settings, if it must: outside development
    a guessable key would let anyone forge CSRF tokens."""
    problem = secret_key_problem(settings)
    if problem and not settings.debug:
        return f"{problem}. Set SECRET_KEY (or DEBUG=true)."
    return None


def deployment_problems(settings: Settings) -> list[str]:
    """A self-check of a production configuration (in the spirit of `check --deploy`)."""
    checks = {
        "DEBUG is on": settings.debug,
        "SECURE_COOKIES is off: session cookies would travel over plain http": not (
            settings.secure_cookies
        ),
        "ALLOWED_HOSTS accepts any host": "*" in settings.allowed_hosts,
        "ALLOWED_HOSTS still lists only development hosts": set(settings.allowed_hosts)
        <= {"localhost", "127.0.0.1", "testserver"},
        "DATABASE_URL points at an in-memory database": ":memory:" in settings.database_url,
        "SMTP_HOST is not set: mail would only be written to OUTBOX_DIR": not settings.smtp_host,
        "SMTP_SECURITY is none: mail and SMTP credentials would travel in the clear": (
            settings.smtp_security == "none"
        ),
        "MAIL_FROM still names localhost": "@localhost" in settings.mail_from,
        "PUBLIC_URL is not set: links in mail would follow each request's Host header": not (
            settings.public_url
        ),
    }
    problems = [message for message, failed in checks.items() if failed]
    key_problem = secret_key_problem(settings)
    return [key_problem, *problems] if key_problem else problems


@lru_cache
def get_settings() -> Settings:
    """The environment's settings, read once per process (the app keeps its own copy in
    `app.state.settings`, which is what requests read)."""
    return Settings()


# ---------------------------------------------------------------- the one clock

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def file_clock(path: Path) -> Clock:
    """A clock that reads the time from `path` on every call: a test writes the file, and
    every process of a server sees the same moment."""

    def now() -> datetime:
        return datetime.fromisoformat(path.read_text().strip()).astimezone(UTC)

    return now


_clock: Clock = system_clock


def use_clock(clock: Clock) -> Clock:
    """Make `clock` the source of time for this process; returns the one it replaces."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Everything that depends on time reads it here
    (throttles, expiries, timestamps), so tests move one clock instead of sleeping."""
    return _clock()
