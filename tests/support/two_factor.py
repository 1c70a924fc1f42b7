"""Two-factor sign-in as a test drives it: codes at a given moment, and what the pages show."""

import re
from datetime import datetime

import pyotp

SECRET_TEXT = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')
RECOVERY_CODE = re.compile(r"<li><code>([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})</code></li>")
# A fixed key for accounts a test sets up directly.
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code_at(secret: str, moment: datetime, steps: int = 0) -> str:
    """The code an authenticator app shows at `moment` (`steps` of 30 s later or earlier)."""
    return pyotp.TOTP(secret).at(moment, counter_offset=steps)


def secret_from(html: str) -> str:
    match = SECRET_TEXT.search(html)
    assert match, "the set-up page shows no key"
    return match.group(1).replace(" ", "")


def recovery_codes_from(html: str) -> list[str]:
    return RECOVERY_CODE.findall(html)


def enable_two_factor(db, user, secret: str = SECRET) -> list[str]:
    """Turn two-factor sign-in on for `user` as the set-up page does (the code for this
    moment is then used up); returns the recovery codes."""
    from config import utcnow
    from services import two_factor

    user.totp_pending_secret = secret
    db.commit()
    return two_factor.confirm_setup(
        db, user=user, code=code_at(secret, utcnow()), client_ip="setup", keep_token=None
    )
