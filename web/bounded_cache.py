"""A per-process map from keys to values made from some version of the data, bounded by the
bytes it holds and emptied least recently used first. The page cache and the fragment
cache are both one."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from threading import Lock
from typing import Generic, TypeVar

Stamp = tuple[object, ...]
Value = TypeVar("Value")


class BoundedCache(Generic[Value]):
    """Each value is stored with the stamp of what it was made from, and served only to a
    caller that names the same stamp: one made from older data is dropped when met."""

    def __init__(self, max_bytes: int, size_of: Callable[[Value], int]) -> None:
        self._entries: OrderedDict[Hashable, tuple[Stamp, Value, int]] = OrderedDict()
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._bytes = 0
        # Route bodies run on a thread pool: two may store at once.
        self._lock = Lock()

    @property
    def size_in_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Hashable) -> tuple[Stamp, Value] | None:
        """The stamp and value stored for `key`, whatever the stamp (to learn what to check)."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else (entry[0], entry[1])

    def get(self, key: Hashable, stamp: Stamp) -> Value | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] != stamp:
                # Made before a later change, so it can never be served again.
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, stamp: Stamp, value: Value) -> None:
        size = self._size_of(value) + len(str(key))
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (stamp, value, size)
            self._bytes += size
            while self._bytes > self._max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: Hashable) -> None:
        self._bytes -= self._entries.pop(key)[2]
