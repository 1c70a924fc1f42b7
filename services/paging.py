"""Where one page stands in a newest-first list: the part every paginated listing shares."""

from dataclasses import dataclass


@dataclass(frozen=True)
class NumberedPage:
    """Page `number` of `size` rows; `last_known_page` is the highest page known to exist
    (listings count only a bounded number of rows past the current page)."""

    number: int
    size: int
    last_known_page: int

    @property
    def has_next(self) -> bool:
        return self.last_known_page > self.number

    @property
    def has_previous(self) -> bool:
        return self.number > 1
