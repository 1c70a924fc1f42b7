"""Throttling, kept in the database so that every worker process sees the same count.

What is counted, each row keyed by what it counts against:
- failed password checks (logging in, or confirming the current password before a sensitive
  change), against the account (`user:<id>`), or for a name no account has, that name
  (`name:<lower-cased name>`), and against the client's address (`ip:<address>`);
- failed second-step codes (services.two_factor), against the account (`otp:<id>`) and the
  address: a right password does not clear them, so knowing the password buys no more
  guesses at the code;
- registrations, against the client's address (`register:<address>`);
- password reset requests, against the client's address (`reset-ip:<address>`) and the email
  address asked about (`reset-email:<address>`, whether or not an account has it);
- verification mails sent again on request, against the account (`verify:<id>`);
- posts a new account has written, against the account (`new-post:<id>`): ids are never
  reused (sqlite_autoincrement), so every row of the key is that account's.

An IPv4 address counts on its own; an IPv6 address counts with the rest of its /64, which
one subscriber usually holds whole and can pick any address from.
"""

import ipaddress
import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from config import utcnow
from models import LoginFailure
from services.errors import ThrottledError

# Failures allowed in the window before each further attempt must wait, per key kind.
THROTTLE_WINDOW = timedelta(minutes=15)
FREE_ATTEMPTS = {"user": 5, "name": 5, "otp": 5, "ip": 20}
MAX_WAIT_SECONDS = int(THROTTLE_WINDOW.total_seconds())
# Registrations one address may make (accounts created, and attempts refused as a duplicate:
# each of those would tell whether an email address has an account).
REGISTRATION_WINDOW = timedelta(hours=1)
REGISTRATIONS_PER_ADDRESS = 10
IPV6_GROUP_PREFIX = 64
KEY_MAX_LENGTH = 200


def address_group(client_ip: str) -> str:
    """The unit a client address is counted in: the address itself for IPv4 (an IPv4 address
    mapped into IPv6 included), its /64 network for IPv6."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address.packed, IPV6_GROUP_PREFIX), strict=False)
        return str(network)
    return str(address)


def _key(kind: str, value: str) -> str:
    return f"{kind}:{value}"[:KEY_MAX_LENGTH]


def account_key(user_id: int) -> str:
    return _key("user", str(user_id))


def code_key(user_id: int) -> str:
    return _key("otp", str(user_id))


def unknown_name_key(username: str) -> str:
    return _key("name", username.strip().lower())


def address_key(client_ip: str) -> str:
    return _key("ip", address_group(client_ip))


def registration_key(client_ip: str) -> str:
    return _key("register", address_group(client_ip))


# ---------------------------------------------------------------- failed password checks


def seconds_until_allowed(db: Session, *, keys: list[str], now: datetime | None = None) -> int:
    """0 if a password check may go ahead, else how long the client must wait.

    Past the free attempts, each failure doubles the wait since the last failure, up to
    the whole window: slowed down first, then refused for a while.
    """
    now = now or utcnow()
    rows = db.execute(
        select(LoginFailure.key, func.count(), func.max(LoginFailure.failed_at))
        .where(LoginFailure.key.in_(keys), LoginFailure.failed_at > now - THROTTLE_WINDOW)
        .group_by(LoginFailure.key)
    ).all()
    wait = 0
    for key, failures, last_failure in rows:
        excess = failures - FREE_ATTEMPTS[key.split(":", 1)[0]]
        if excess >= 0:
            delay = timedelta(seconds=min(2**excess, MAX_WAIT_SECONDS))
            wait = max(wait, int((last_failure + delay - now).total_seconds()) + 1)
    return max(wait, 0)


def record_login_failure(db: Session, *, keys: list[str]) -> None:
    db.add_all(LoginFailure(key=key) for key in keys)
    db.commit()


def clear_login_failures(db: Session, *, key: str) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.key == key))
    db.commit()


# ---------------------------------------------------------------- registrations


def check_registrations(db: Session, *, key: str, now: datetime | None = None) -> None:
    """Raise ThrottledError if the address behind `key` registered its allowance already
    within the window; the wait lasts until the oldest of those leaves it."""
    check_allowance(
        db, key=key, allowance=REGISTRATIONS_PER_ADDRESS, window=REGISTRATION_WINDOW, now=now
    )


def check_allowance(
    db: Session, *, key: str, allowance: int, window: timedelta, now: datetime | None = None
) -> None:
    """Raise ThrottledError if `key` was counted `allowance` times within `window`; the
    wait lasts until the oldest of those leaves it."""
    now = now or utcnow()
    recent = db.scalars(
        select(LoginFailure.failed_at)
        .where(LoginFailure.key == key, LoginFailure.failed_at > now - window)
        .order_by(LoginFailure.failed_at.desc())
        .limit(allowance)
    ).all()
    if len(recent) >= allowance:
        wait = math.ceil((recent[-1] + window - now).total_seconds())
        raise ThrottledError(max(wait, 1))


def count_registration(db: Session, *, key: str) -> None:
    """Count one registration in the current transaction (committed with the account)."""
    db.add(LoginFailure(key=key))


# ---------------------------------------------------------------- mailed links

MAIL_WINDOW = timedelta(hours=1)
RESETS_PER_ADDRESS = 20
RESETS_PER_EMAIL = 3
VERIFICATIONS_PER_ACCOUNT = 3


def reset_address_key(client_ip: str) -> str:
    return _key("reset-ip", address_group(client_ip))


def reset_email_key(email: str) -> str:
    return _key("reset-email", email.strip().lower())


def verification_key(user_id: int) -> str:
    return _key("verify", str(user_id))


def count_mail_request(db: Session, *, keys: list[str]) -> None:
    """Count a request for a mailed link against `keys`, in the current transaction."""
    db.add_all(LoginFailure(key=key) for key in keys)


# ---------------------------------------------------------------- new accounts' posts


def new_post_key(user_id: int) -> str:
    return _key("new-post", str(user_id))


def count_new_posts(db: Session, *, user_id: int, allowance: int, count: int, wait: int) -> None:
    """Count `count` posts against a new account's `allowance`, in the current transaction;
    ThrottledError(wait) if they do not all fit in what is left of it."""
    key = new_post_key(user_id)
    written = db.scalar(select(func.count()).where(LoginFailure.key == key)) or 0
    if written + count > allowance:
        raise ThrottledError(max(wait, 1))
    db.add_all(LoginFailure(key=key) for _ in range(count))
