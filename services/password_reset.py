"""Password reset by mail: a request answered the same way whether or not an account has
the address, and a single-use link, valid for an hour, that sets a new password and ends
every session and API token of the account.

Which address a link goes to: the account's own address, which is either verified or, for an
account that has never verified any, the one it registered with. A changed address is only
pending until it is verified, and never gets a link: a mistyped or borrowed new address
cannot take the account. An unverified address of an account that never verified one does
get links, or such an account (every account from before verification) could never get back
in; its owner gave that address and no other.
"""

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from config import utcnow
from models import LoginFailure, User
from services import account_links, mail, passwords, sessions, throttling
from services.errors import InvalidLinkError
from services.tokens import digest, new_token

RESET_TTL = timedelta(hours=1)


def request_reset(db: Session, *, email: str, client_ip: str, site: mail.Site) -> None:
    """Mail a reset link if an account has `email`; commit. ThrottledError past the
    allowance of the client's address or of the email address asked about.

    The same work is done either way (the throttle, a token, the message rendered), and the
    caller gives the same answer, so neither the reply nor its timing tells whether the
    address has an account.
    """
    address = email.strip().lower()
    keys = [throttling.reset_address_key(client_ip), throttling.reset_email_key(address)]
    allowances = (throttling.RESETS_PER_ADDRESS, throttling.RESETS_PER_EMAIL)
    for key, allowance in zip(keys, allowances, strict=True):
        throttling.check_allowance(db, key=key, allowance=allowance, window=throttling.MAIL_WINDOW)
    throttling.count_mail_request(db, keys=keys)
    user = db.scalar(select(User).where(User.email == address))
    if user is None:
        # What the other branch costs besides two INSERTs: a token and the rendering.
        digest(new_token())
        mail.render("password_reset", site=site, username=address, link=site.home)
        db.commit()
        return
    # A new link replaces any earlier one still unused.
    account_links.retire_all(db, user_id=user.id, purpose="reset")
    token = account_links.issue(db, user=user, purpose="reset", email=user.email, ttl=RESET_TTL)
    mail.queue(
        db,
        to=user.email,
        template="password_reset",
        subject=f"Reset your {site.name} password",
        site=site,
        give_up_at=utcnow() + RESET_TTL,
        username=user.username,
        link=site.password_reset(token),
    )
    db.commit()


def check_link(db: Session, *, token: str) -> User:
    """The account a live reset link belongs to; InvalidLinkError for any other token.
    Ends the read transaction."""
    try:
        link = account_links.find_live(db, token=token, purpose="reset")
        # A link mailed to an address the account no longer has opens nothing.
        if link.email != link.user.email:
            raise InvalidLinkError(token)
        return link.user
    finally:
        db.commit()


def reset_password(db: Session, *, token: str, new_password: str) -> User:
    """Set the new password through a live link, use the link up, and end every session and
    API token of the account; commit. InvalidLinkError if the link is not live.

    The hash is made between the check and the write, with no transaction open, so no lock
    is held while argon2 runs; the write then uses the link up only if no one did meanwhile.
    """
    check_link(db, token=token)
    password_hash = passwords.hash_password(new_password)
    link = account_links.find_live(db, token=token, purpose="reset")
    user = link.user
    if link.email != user.email:
        db.rollback()
        raise InvalidLinkError(token)
    account_links.use_up(db, link)
    account_links.retire_all(db, user_id=user.id, purpose="reset")
    user.password_hash = password_hash
    # Following the link proves the address reaches its owner.
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    # The failures someone else piled up must not keep the owner out now.
    db.execute(delete(LoginFailure).where(LoginFailure.key == throttling.account_key(user.id)))
    sessions.end_all_sessions(db, user=user)
    return user
