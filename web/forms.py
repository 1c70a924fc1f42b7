"""What every HTML form route shares: form fields, and validation through the same Pydantic
schemas the API uses, with errors worded for a person."""

from typing import Annotated, TypeVar

from fastapi import Form
from pydantic import BaseModel, ValidationError

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
