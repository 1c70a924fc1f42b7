"""What every HTML form route shares: form fields, and validation through the same Pydantic
schemas the API uses, with errors worded for a person."""

from datetime import datetime
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Form
from pydantic import BaseModel, ValidationError

from schemas import MAX_ID
from services.errors import ThrottledError
from services.text import duration

FormText = Annotated[str, Form()]
Errors = dict[str, str]
Model = TypeVar("Model", bound=BaseModel)


def form_errors(exc: ValidationError) -> Errors:
    """Field name → first message, worded for a person rather than a program."""
    errors: Errors = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        message = error["msg"].removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


def validate(schema: type[Model], values: dict[str, str]) -> Model | Errors:
    """The schema instance, or the field errors; the API validates with the same schemas."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        return form_errors(exc)


PASSWORDS_DIFFER = "The passwords do not match"


def validate_confirmed(
    schema: type[Model], values: dict[str, str], password: str, confirmation: str
) -> Model | Errors:
    """`validate`, and the new password typed a second time must be the same: a form that
    sets a password asks for it twice, so a typo does not lock its owner out."""
    result = validate(schema, values)
    errors = result if isinstance(result, dict) else {}
    if password != confirmation:
        errors.setdefault("confirm_password", PASSWORDS_DIFFER)
    return errors or result


def too_many_failures(exc: ThrottledError) -> str:
    return f"Too many failed attempts. Try again in {duration(exc.retry_after)}."


LOCAL_INPUT_FORMAT = "%Y-%m-%dT%H:%M"


def split_tags(text: str) -> list[str]:
    """'Travel, café culture,' -> ['Travel', 'café culture']."""
    return [name.strip() for name in text.split(",") if name.strip()]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_local_datetime(text: str, timezone: str) -> datetime | None:
    """A `datetime-local` input's value, read in the author's time zone; None when empty."""
    if not text.strip():
        return None
    try:
        naive = datetime.strptime(text.strip()[:16], LOCAL_INPUT_FORMAT)
    except ValueError:
        raise ValueError("Enter a date and time, such as 2027-01-31T09:00") from None
    return naive.replace(tzinfo=zone(timezone))


def local_datetime_input(moment: datetime | None, timezone: str) -> str:
    """`moment` as a `datetime-local` input shows it, in the author's time zone."""
    return moment.astimezone(zone(timezone)).strftime(LOCAL_INPUT_FORMAT) if moment else ""


def version_number(value: str) -> int | None:
    """The version a form field holds, as the edit form writes it (ASCII digits, no sign or
    leading zero, within the column's range), else None."""
    if not (value.isascii() and value.isdigit()) or value.startswith("0"):
        return None
    # Length first: int() of thousands of digits is slow, and past 4,300 it raises.
    if len(value) > len(str(MAX_ID)) or int(value) > MAX_ID:
        return None
    return int(value)
