"""The Jinja2 environment shared by every page router: filters and globals live here."""

from datetime import datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def long_date(value: datetime) -> str:
    """'January 15, 2024' — written out so it reads the same in every locale."""
    return f"{value:%B} {value.day}, {value.year}"


def page_window(current: int, last_known: int, radius: int = 2) -> list[int]:
    """Page numbers to show around `current`, never past the last page known to exist."""
    return list(range(max(1, current - radius), min(last_known, current + radius) + 1))


templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.filters["long_date"] = long_date
templates.env.globals["page_window"] = page_window
