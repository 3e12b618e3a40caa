"""A streaming reader for JSON files of any layout, with exact error locations.

The outer levels of a scenario file (the top-level object, ``entities``, and the arrays
of entities) are walked here token by token; every value inside them is parsed by the
standard library's C scanner (``raw_decode``) over a sliding window of the file, so
memory stays bounded by the largest single value, not the file. The scanner is set up
to refuse what JSON allows but we must not accept silently:

- ``NaN`` / ``Infinity`` (Python would accept them),
- an object with a repeated key (Python would keep the last value),
- control characters in strings (``strict``).

Integers of any length stay exact (the standard library's ``int``; the 4300-digit limit
is reported as an error), and nesting beyond Python's recursion limit is caught.
ijson's fast backend is not used: it reports integers beyond 64 bits as an overflow,
turns a lone surrogate escape into ``?`` and builds quadratic prefixes on deep nesting.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from ..entities import MAX_DEPTH, MAX_INT_DIGITS, json_path
from ..errors import InvalidScenarioFileError

__all__ = ["JsonStream", "Event", "DECODER"]

_READ_BYTES = 1 << 20
_MAX_VALUE_CHARS = 256 << 20  # one value (an entity) larger than this is refused
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A value parsed (or failing) this close to the window's end may be cut short by it:
# longer than any escape (\uD83D\uDE00) or literal (-Infinity).
_MARGIN = 64


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Constant(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise _Constant(name)


DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant, strict=True)

class Event(NamedTuple):
    """One step of :meth:`JsonStream.walk`.

    ``kind`` is ``field`` (a top-level member returned whole: ``key``, ``value``),
    ``list`` (an array of candidate entities starts: ``key``; ``value`` is True inside
    ``entities``, False at the top level), ``item`` (one element: ``value``) or ``end``
    (the array ended). ``pos`` is where the value starts; :meth:`JsonStream.location`
    turns it into a line and column until the next event is taken.
    """

    kind: str
    key: str | None
    value: Any
    path: str
    pos: int


class JsonStream:
    """Walk a JSON scenario file from disk with bounded memory.

    Args:
        path: the file (named in every error).
        file: the file opened in binary mode.
    """

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._bytes_read = 0
        # Position bookkeeping for line/column of errors: text dropped from the window.
        self._dropped_chars = 0
        self._dropped_lines = 0
        self._dropped_tail = 0  # characters after the last newline in the dropped text
        self.value_start = 0  # window position where the last parsed value began

    # ------------------------------------------------------------------ the window

    def _fill(self) -> bool:
        """Read more of the file into the window; False at end of file."""
        if self._eof:
            return False
        if self._pos > (1 << 20) and self._pos > len(self._buf) // 2:
            dropped = self._buf[: self._pos]
            newlines = dropped.count("\n")
            if newlines:
                self._dropped_lines += newlines
                self._dropped_tail = len(dropped) - dropped.rfind("\n") - 1
            else:
                self._dropped_tail += len(dropped)
            self._dropped_chars += self._pos
            self._buf = self._buf[self._pos :]
            self._pos = 0
        chunk = self._file.read(_READ_BYTES)
        try:
            text = self._decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise InvalidScenarioFileError(
                self.path,
                "the file is not UTF-8 text (JSON must be UTF-8)",
                f"byte {self._bytes_read + exc.start}",
            ) from None
        self._bytes_read += len(chunk)
        if not chunk:
            self._eof = True
        self._buf += text
        return bool(chunk)

    def location(self, pos: int | None = None) -> str:
        """``line L column C`` of a position in the window (default: the current one)."""
        pos = self._pos if pos is None else pos
        before = self._buf[:pos]
        newlines = before.count("\n")
        if newlines:
            column = pos - before.rfind("\n")
        else:
            column = self._dropped_tail + pos + 1
        return f"line {self._dropped_lines + newlines + 1} column {column}"

    def where(self, path: str, pos: int | None = None) -> str:
        """``path (line L column C)``: how errors say where a value is."""
        return f"{path} ({self.location(pos)})"

    def _error(self, problem: str, path: str, pos: int | None = None) -> InvalidScenarioFileError:
        return InvalidScenarioFileError(self.path, problem, self.where(path, pos))

    def _skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at end of file)."""
        while True:
            self._pos = _WHITESPACE.match(self._buf, self._pos).end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _expect(self, allowed: str, path: str, what: str) -> str:
        char = self._skip_ws()
        if not char or char not in allowed:
            found = f"{char!r}" if char else "the end of the file"
            raise self._error(f"expected {what}, found {found}", path)
        self._pos += 1
        return char

    def value(self, path: str) -> Any:
        """Parse the JSON value at the current position."""
        self._skip_ws()
        while True:
            start = self._pos
            try:
                value, end = DECODER.raw_decode(self._buf, start)
            except json.JSONDecodeError as exc:
                at_window_end = exc.pos >= len(self._buf) - _MARGIN or exc.msg.startswith("Unterminated string")
                if at_window_end and self._grow(path, start):
                    continue
                raise self._error(f"invalid JSON: {exc.msg}", path, exc.pos) from None
            except _DuplicateKey as exc:
                raise self._error(f"an object has the key {exc.key!r} twice", path, start) from None
            except _Constant as exc:
                raise self._error(f"{exc.name} is not a JSON number; use null or a number", path, start) from None
            except RecursionError:
                raise self._error(f"nesting is deeper than {MAX_DEPTH} levels", path, start) from None
            except ValueError:  # Python's limit on integer digits
                raise self._error(
                    f"an integer is longer than {MAX_INT_DIGITS} digits", path, start
                ) from None
            if end > len(self._buf) - _MARGIN and self._grow(path, start):
                continue  # a number (1.5e-7) or escape cut by the window's end: read on
            self._pos = end
            self.value_start = start  # refills move the window: read it after parsing
            return value

    def _grow(self, path: str, start: int) -> bool:
        if len(self._buf) - start > _MAX_VALUE_CHARS:
            raise self._error(f"a single value is larger than {_MAX_VALUE_CHARS >> 20} MB", path, start)
        return self._fill()  # (the window may shrink: a refill also drops what was read)

    def _key(self, path: str) -> str:
        if self._skip_ws() != '"':
            raise self._error("expected a member name in double quotes", path)
        key = self.value(path)
        self._expect(":", path, "':' after a member name")
        return key

    # ------------------------------------------------------------------ the walk

    def _members(self, path: str) -> Iterator[tuple[str, str]]:
        """Yield (key, member path) of the object at the current position; the caller
        consumes each member's value before asking for the next."""
        self._expect("{", path, "a JSON object")
        seen: set[str] = set()
        if self._skip_ws() == "}":
            self._pos += 1
            return
        while True:
            key_pos = self._pos
            key = self._key(path)
            if key in seen:
                raise self._error(f"the key {key!r} appears twice", path, key_pos)
            seen.add(key)
            yield key, json_path(path, key)
            if self._expect(",}", path, "',' or '}'") == "}":
                return

    def _items(self, path: str) -> Iterator[Event]:
        self._expect("[", path, "an array")
        index = 0
        if self._skip_ws() == "]":
            self._pos += 1
        else:
            while True:
                item_path = f"{path}[{index}]"
                value = self.value(item_path)
                yield Event("item", None, value, item_path, self.value_start)
                index += 1
                if self._expect(",]", path, "',' or ']'") == "]":
                    break
        yield Event("end", None, None, path, self._pos)

    def walk(self, streamed: Callable[[str], bool]) -> Iterator[Event]:
        """Walk the file: the top-level object, ``entities``, and entity arrays.

        Args:
            streamed: whether a top-level key's array value is streamed item by item
                (candidate entity lists). Other members come whole as ``field`` events.

        Raises:
            InvalidScenarioFileError: with the JSON path and line/column of the problem.
        """
        if self._skip_ws() == "":
            raise InvalidScenarioFileError(self.path, "the file is empty; a scenario file is a JSON object")
        if self._buf[self._pos] != "{":
            kind = "an array" if self._buf[self._pos] == "[" else "not a JSON object"
            raise self._error(
                f"the top level is {kind}; a scenario file is a JSON object "
                '(e.g. {"name": ..., "entities": {"patients": [...]}})',
                "$",
            )
        for key, path in self._members("$"):
            first = self._skip_ws()
            if key == "entities":
                if first != "{":
                    raise self._error("'entities' must be an object of entity type to list of entities", path)
                for entity_type, type_path in self._members(path):
                    if self._skip_ws() != "[":
                        raise self._error(f"entities[{entity_type!r}] must be a list of entities", type_path)
                    yield Event("list", entity_type, True, type_path, self._pos)
                    yield from self._items(type_path)
            elif first == "[" and streamed(key):
                yield Event("list", key, False, path, self._pos)
                yield from self._items(path)
            else:
                value = self.value(path)
                yield Event("field", key, value, path, self.value_start)
        if self._skip_ws() != "":
            raise self._error("unexpected data after the end of the JSON object", "$")

