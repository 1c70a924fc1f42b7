"""Two-factor sign-in: time-based one-time codes (RFC 6238) from an authenticator app, and
single-use recovery codes for when the phone is lost.

The secret is stored as it is (users.totp_secret): the server must read it to check a code,
and whoever holds a copy of the database holds everything a second factor protects already.
Encrypting it with a key from the settings would add a key whose loss locks every such
account out, against a thief who would usually take the settings along. Recovery codes carry
80 random bits each, so, like session tokens, only their SHA-256 is kept: no guessing undoes
a hash of that much chance, and unlike argon2 it costs nothing to check ten of them.

Every check reads the one clock (config.utcnow), and every code is accepted at most once:
the account keeps the last time step a code was accepted for and refuses that step and any
before it, with one conditional UPDATE, so two requests racing with one code cannot both win.
"""

import base64
import secrets
from typing import Literal, NoReturn

import pyotp
from markupsafe import Markup
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from config import utcnow
from models import RecoveryCode, User
from services import sessions, throttling
from services.errors import ConflictError, ThrottledError, WrongCodeError
from services.tokens import digest

DIGITS = 6
STEP_SECONDS = 30
# One step either side of now: a phone's clock may be a little off, and typing takes time.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 letters, shown in groups of four
CODE_NEEDED = "Enter the code from your authenticator app, or a recovery code"
WRONG_CODE = "That code is not right, or it has been used already"
ALREADY_ON = "Two-factor sign-in is already on"
NOT_SET_UP = "Start the set-up again: there is no key waiting to be confirmed"
# Letters people mistake for base32's own, read as what they must have meant.
LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})
CodeKind = Literal["app", "recovery"]


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


# ---------------------------------------------------------------- setting it up


def begin_setup(db: Session, *, user: User) -> None:
    """Give the account a new secret waiting to be confirmed (replacing any earlier one)."""
    if user.two_factor_enabled:
        raise ConflictError(ALREADY_ON)
    user.totp_pending_secret = pyotp.random_base32()
    db.commit()


def provisioning_uri(secret: str, *, username: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return _totp(secret).provisioning_uri(name=username, issuer_name=issuer)


def qr_code_svg(uri: str, *, title: str) -> Markup:
    """`uri` as a QR code in inline SVG: paths only, dark on a light ground whatever the
    page's theme (scanners need the contrast). Safe to insert as markup: the data becomes
    geometry, and the title is escaped."""
    # Imported here: only the set-up page draws a code, and a worker that never shows it
    # is spared the library's memory.
    import segno

    code = segno.make(uri, error="m")
    svg = code.svg_inline(
        scale=4, dark="#000", light="#fff", svgclass="qr-code", lineclass=None, title=title
    )
    return Markup(svg)


def confirm_setup(
    db: Session, *, user: User, code: str, client_ip: str, keep_token: str | None
) -> list[str]:
    """Turn two-factor sign-in on, once `code` shows the app holds the pending secret.

    Returns the new recovery codes (shown once). Ends every other session and token of the
    account. Raises ConflictError when there is nothing to confirm, WrongCodeError (counted
    under the code throttle) and ThrottledError as `check_code` does.
    """
    if user.two_factor_enabled:
        raise ConflictError(ALREADY_ON)
    secret = user.totp_pending_secret
    if secret is None:
        raise ConflictError(NOT_SET_UP)
    keys = _keys(user, client_ip)
    _wait_for_throttle(db, keys)
    step = _matching_step(secret, code)
    if step is None:
        _refuse(db, keys, missing=not code.strip())
    user.totp_secret, user.totp_pending_secret, user.totp_last_step = secret, None, step
    throttling.clear_login_failures(db, key=keys[0])
    return _replace_recovery_codes(db, user=user, keep_token=keep_token)


def disable(db: Session, *, user: User, keep_token: str | None) -> None:
    """Turn two-factor sign-in off (the caller has checked the password and a code) and end
    every other session and token of the account."""
    user.totp_secret = user.totp_pending_secret = user.totp_last_step = None
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    sessions.end_all_sessions(db, user=user, keep_token=keep_token)


def regenerate_recovery_codes(db: Session, *, user: User, keep_token: str | None) -> list[str]:
    """New recovery codes in place of the old ones (the caller has checked a code)."""
    if not user.two_factor_enabled:
        raise ConflictError(NOT_SET_UP)
    return _replace_recovery_codes(db, user=user, keep_token=keep_token)


def _replace_recovery_codes(db: Session, *, user: User, keep_token: str | None) -> list[str]:
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_digest(code)) for code in codes)
    # A change of how the account signs in ends the sessions made under the old rules.
    sessions.end_all_sessions(db, user=user, keep_token=keep_token)
    return codes


def _new_recovery_code() -> str:
    letters = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode()
    return "-".join(letters[i : i + 4] for i in range(0, len(letters), 4))


def _normalised_recovery_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper().translate(LOOKALIKES)


def _recovery_digest(code: str) -> str:
    return digest(_normalised_recovery_code(code))


def recovery_codes_left(db: Session, *, user: User) -> int:
    query = select(func.count()).where(RecoveryCode.user_id == user.id)
    return db.scalar(query) or 0


# ---------------------------------------------------------------- checking a code


def _keys(user: User, client_ip: str) -> list[str]:
    return [throttling.code_key(user.id), throttling.address_key(client_ip)]


def _wait_for_throttle(db: Session, keys: list[str]) -> None:
    wait = throttling.seconds_until_allowed(db, keys=keys)
    if wait:
        db.commit()
        raise ThrottledError(wait)


def _refuse(db: Session, keys: list[str], *, missing: bool) -> NoReturn:
    """Raise WrongCodeError; a wrong code counts as a failure, a missing one does not."""
    if missing:
        db.commit()
        raise WrongCodeError(CODE_NEEDED, missing=True)
    throttling.record_login_failure(db, keys=keys)
    raise WrongCodeError(WRONG_CODE)


def _matching_step(secret: str, code: str) -> int | None:
    """The time step `code` belongs to, within the window around now; None if none."""
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    try:
        return _totp(secret).verify_and_get_timecode(
            typed, for_time=utcnow(), valid_window=VALID_WINDOW
        )
    except OTPVerificationError:
        return None


def _accept_step(db: Session, *, user: User, step: int) -> bool:
    """Record `step` as the last one accepted, unless it or a later one was already."""
    result = db.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return bool(result.rowcount)


def _use_recovery_code(db: Session, *, user: User, code: str) -> bool:
    result = db.execute(
        delete(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _recovery_digest(code)
        )
    )
    return bool(result.rowcount)


def check_code(db: Session, *, user: User, code: str | None, client_ip: str) -> CodeKind:
    """Accept `code` for `user` once: a code from the app, or one of the recovery codes.

    Throttled like passwords, per account and address (in the database, so across every
    worker): raises ThrottledError while either must wait, WrongCodeError for a wrong or
    reused code (counted) or none at all (not counted). Says which kind of code it was.
    """
    keys = _keys(user, client_ip)
    _wait_for_throttle(db, keys)
    code = code or ""
    if not code.strip():
        _refuse(db, keys, missing=True)
    if user.totp_secret is None:
        raise ConflictError(NOT_SET_UP)
    step = _matching_step(user.totp_secret, code)
    if step is not None and _accept_step(db, user=user, step=step):
        kind: CodeKind = "app"
    elif step is None and _use_recovery_code(db, user=user, code=code):
        kind = "recovery"
    else:
        _refuse(db, keys, missing=False)
    db.commit()
    throttling.clear_login_failures(db, key=keys[0])
    return kind
