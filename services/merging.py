"""Three-way merges of a stale edit with the version saved meanwhile.

The edit and the saved version are both compared with the revision the edit started from:
what only one side changed is taken from that side; what both changed alike is taken once;
what both changed differently is a conflict, and nothing is merged.
"""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import merge3


@dataclass(frozen=True)
class TextMerge:
    text: str
    conflicted: bool


def merge_text(base: str, mine: str, theirs: str) -> TextMerge:
    """Merge line by line (a paragraph is a line in Markdown); overlapping changes of
    the same lines conflict."""
    texts = [text.replace("\r\n", "\n") for text in (base, mine, theirs)]
    merged: list[str] = []
    for group in merge3.Merge3(*(_lines(text) for text in texts)).merge_groups():
        if group[0] == "conflict":
            return TextMerge(mine, conflicted=True)
        merged.extend(group[1])
    text = "".join(merged)
    if not texts[1].endswith("\n") and not texts[2].endswith("\n"):
        text = text.removesuffix("\n")
    return TextMerge(text, conflicted=False)


def _lines(text: str) -> list[str]:
    # Every line ends with a line break, the last one too: otherwise an edit of the line
    # before it would also seem to touch it (and conflict with any change to it).
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(True)]


def merge_field(base: Hashable, mine: Hashable, theirs: Hashable) -> tuple[Hashable, bool]:
    """One field merged as a whole: (the value to keep, whether the two sides conflict)."""
    if mine in (base, theirs):
        return theirs, False
    if theirs == base:
        return mine, False
    return mine, True


@dataclass(frozen=True)
class FieldsMerge:
    values: dict[str, Hashable]
    conflicts: list[str]


def merge_fields(
    base: Mapping[str, Hashable], mine: Mapping[str, Hashable], theirs: Mapping[str, Hashable]
) -> FieldsMerge:
    """Every field of `mine` merged on its own with the same field of the other two."""
    values: dict[str, Hashable] = {}
    conflicts = []
    for name, value in mine.items():
        values[name], conflicted = merge_field(base[name], value, theirs[name])
        if conflicted:
            conflicts.append(name)
    return FieldsMerge(values, conflicts)
