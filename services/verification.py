"""Email verification: a single-use link, valid for 48 hours, mailed to a new account's
address and to any new address an account asks for. A new address is kept pending and takes
the old one's place only once its link is followed; the old address is then told."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import utcnow
from models import User
from services import account_links, mail, throttling
from services.errors import DuplicateError, InvalidLinkError

VERIFY_TTL = timedelta(hours=48)
TAKEN = "That address belongs to another account now; it cannot be used"


def send_link(db: Session, *, user: User, email: str, site: mail.Site) -> None:
    """Queue a verification link for `email` (in the session's transaction); earlier links
    of the account stop working."""
    if user.id is not None:
        account_links.retire_all(db, user_id=user.id, purpose="verify")
    token = account_links.issue(db, user=user, purpose="verify", email=email, ttl=VERIFY_TTL)
    changing = email != user.email
    mail.queue(
        db,
        to=email,
        template="verify_email",
        subject=f"{site.name}: confirm your email address, {user.username}",
        site=site,
        give_up_at=utcnow() + VERIFY_TTL,
        username=user.username,
        link=site.verify_email(token),
        changing=changing,
    )


def address_to_verify(user: User) -> str | None:
    """The address waiting for its link: a pending new one, or an unverified own one."""
    if user.pending_email:
        return user.pending_email
    return None if user.email_verified_at else user.email


def send_again(db: Session, *, user: User, site: mail.Site) -> str | None:
    """Mail a fresh link to the address waiting for one, within the account's allowance
    (ThrottledError past it); commit. Returns that address (None: nothing to verify)."""
    email = address_to_verify(user)
    if email is None:
        return None
    key = throttling.verification_key(user.id)
    throttling.check_allowance(
        db,
        key=key,
        allowance=throttling.VERIFICATIONS_PER_ACCOUNT,
        window=throttling.MAIL_WINDOW,
    )
    throttling.count_mail_request(db, keys=[key])
    send_link(db, user=user, email=email, site=site)
    db.commit()
    return email


def check_link(db: Session, *, token: str) -> tuple[User, str]:
    """The account and address of a live verification link; InvalidLinkError otherwise.
    Ends the read transaction."""
    try:
        link = account_links.find_live(db, token=token, purpose="verify")
        if link.email not in (link.user.email, link.user.pending_email):
            raise InvalidLinkError(token)  # replaced by a newer address meanwhile
        return link.user, link.email
    finally:
        db.commit()


def verify(db: Session, *, token: str, site: mail.Site) -> User:
    """Follow a verification link: the address is verified, and a pending one becomes the
    account's address (the old one is told); commit. InvalidLinkError for a link that is
    not live, DuplicateError when another account has taken the address meanwhile."""
    link = account_links.find_live(db, token=token, purpose="verify")
    user = link.user
    if link.email not in (user.email, user.pending_email):
        raise InvalidLinkError(token)
    account_links.use_up(db, link)
    if link.email != user.email:
        _take_pending_address(db, user=user, email=link.email, site=site)
    user.email_verified_at = utcnow()
    try:
        db.commit()
    except IntegrityError as exc:  # another account took the address after the check
        db.rollback()
        raise DuplicateError(TAKEN) from exc
    return user


def _take_pending_address(db: Session, *, user: User, email: str, site: mail.Site) -> None:
    """Make the verified pending address the account's, and tell the old one."""
    if db.scalar(select(User.id).where(User.email == email, User.id != user.id)):
        raise DuplicateError(TAKEN)
    old = user.email
    # Reset links mailed to the old address open nothing from now on (see password_reset).
    user.email, user.pending_email = email, None
    mail.queue(
        db,
        to=old,
        template="email_changed",
        subject=f"Your {site.name} email address has been changed",
        site=site,
        username=user.username,
        new_email=email,
    )
