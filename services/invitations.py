"""Registration modes, and invitations for the `invite` one.

REGISTRATION_MODE is `open` (anyone registers), `invite` (only through a link an admin
had mailed: single-use, valid for a week) or `closed` (nobody; admins are still made on the
command line). In open mode an invitation is not needed, but one followed still counts.

An invitation is used up in the transaction that creates the account, by a conditional
UPDATE, so that two registrations racing with one link make one account; an admin
withdrawing it takes the same path. Registering with the address the invitation was mailed
to verifies that address: following the link proved it reaches its owner.
"""

from datetime import timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config import utcnow
from models import Invitation, User
from schemas import MAX_ID
from services import audit, mail
from services.account_links import TOKEN_MAX_LENGTH
from services.errors import DuplicateError, ForbiddenError, NotFoundError
from services.tokens import digest, new_token

RegistrationMode = Literal["open", "invite", "closed"]
INVITATION_TTL = timedelta(days=7)
CLOSED = "Registration is closed on this site."
BY_INVITATION = "Registration on this site is by invitation: use the link in your invitation."
INVITATION_NOT_LIVE = "This invitation has been used, has expired or was withdrawn."
HAS_ACCOUNT = "That address belongs to an account already."
INVITATION_NOT_FOUND = "Invitation not found"


class RegistrationRefusedError(ForbiddenError):
    """Registration is closed, or by invitation and no live one was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def invite(db: Session, *, admin: User, email: str, site: mail.Site) -> Invitation:
    """Mail a new invitation to `email` through the outbox, logged as an admin action;
    commit. DuplicateError if an account has the address already."""
    if db.scalar(select(User.id).where(User.email == email)):
        raise DuplicateError(HAS_ACCOUNT)
    token = new_token()
    invitation = Invitation(
        token_hash=digest(token),
        email=email,
        invited_by_id=admin.id,
        invited_by_name=admin.username,
        expires_at=utcnow() + INVITATION_TTL,
    )
    db.add(invitation)
    db.flush()
    mail.queue(
        db,
        to=email,
        template="invitation",
        subject=f"{admin.username} invites you to write on {site.name}",
        site=site,
        give_up_at=invitation.expires_at,
        inviter=admin.username,
        link=site.invitation(token),
    )
    audit.record(db, admin, "invite", invitation, "")
    db.commit()
    return invitation


def find_live(db: Session, *, token: str) -> Invitation:
    """The unused, unexpired invitation for `token`; RegistrationRefusedError if none."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise RegistrationRefusedError(INVITATION_NOT_LIVE if token else BY_INVITATION)
    invitation = db.scalar(
        select(Invitation).where(
            Invitation.token_hash == digest(token),
            Invitation.used_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    )
    if invitation is None:
        raise RegistrationRefusedError(INVITATION_NOT_LIVE)
    return invitation


def check_mode(db: Session, *, mode: RegistrationMode, token: str | None) -> Invitation | None:
    """Whether a registration may go ahead, and with which invitation: in invite mode the
    live one `token` names (RegistrationRefusedError if none), in open mode that one if it
    is live (it verifies its address) and None otherwise; closed mode refuses."""
    if mode == "closed":
        raise RegistrationRefusedError(CLOSED)
    try:
        return find_live(db, token=token or "")
    except RegistrationRefusedError:
        if mode == "open":
            return None
        raise


def _close(db: Session, invitation_id: int, **values: object) -> bool:
    """Mark the invitation used (accepted or withdrawn), if it still is live."""
    result = db.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.used_at.is_(None))
        .values(used_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def accept(db: Session, *, invitation: Invitation, user: User, mode: RegistrationMode) -> None:
    """Use the invitation up for `user`'s new account, in the open transaction; an address
    it was mailed to counts as verified. If another registration or a withdrawal got there
    first: RegistrationRefusedError in invite mode, an ordinary registration in open mode."""
    # The new account must not be flushed by this UPDATE: a name taken by a registration
    # racing this one fails it at the commit, where it becomes the usual DuplicateError.
    with db.no_autoflush:
        closed = _close(db, invitation.id, used_by_name=user.username)
    if not closed:
        if mode == "invite":
            raise RegistrationRefusedError(INVITATION_NOT_LIVE)
        return
    if user.email == invitation.email:
        user.email_verified_at = utcnow()


def withdraw(db: Session, *, admin: User, invitation_id: int) -> tuple[Invitation, bool]:
    """Withdraw a pending invitation, logged; commit. Returns it, and whether it was still
    pending (one already accepted or withdrawn stays as it is); NotFoundError if none."""
    # An id the INTEGER column cannot hold names none (and would make PostgreSQL raise).
    invitation = db.get(Invitation, invitation_id) if 1 <= invitation_id <= MAX_ID else None
    if invitation is None:
        raise NotFoundError(INVITATION_NOT_FOUND)
    closed = _close(db, invitation.id, withdrawn_at=utcnow())
    if closed:
        audit.record(db, admin, "withdraw invitation", invitation, "")
    db.commit()
    return invitation, closed


def list_invitations(db: Session, *, page: int = 1) -> audit.AdminPage[Invitation]:
    query = select(Invitation).order_by(Invitation.created_at.desc(), Invitation.id.desc())
    return audit.page_of(db, query, page=page)
