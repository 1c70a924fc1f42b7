"""Text rules the domain shares: slugs for addresses."""

import re
import unicodedata

from models import SLUG_MAX_LENGTH


def slugify(text: str, max_length: int = SLUG_MAX_LENGTH) -> str:
    """'Café Culture!' -> 'cafe-culture': ASCII-folded, lower-case, words joined by hyphens
    (empty when nothing is left)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def unicode_slugify(text: str, max_length: int) -> str:
    """Like slugify, but letters of any script are kept: 'Café Culture' -> 'cafe-culture',
    '東京 Tokyo' -> '東京-tokyo'."""
    decomposed = unicodedata.normalize("NFKD", text)
    unmarked = "".join(char for char in decomposed if not unicodedata.combining(char))
    slug = re.sub(r"[\W_]+", "-", unicodedata.normalize("NFC", unmarked).lower()).strip("-")
    return slug[:max_length].rstrip("-")


def duration(seconds: int) -> str:
    """'1 second', '45 seconds', '2 minutes', '90 minutes', '3 hours' (rounded up)."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds <= 2 * 3600:
        minutes = -(-seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = -(-seconds // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"
