"""A streaming reader for JSON files of any layout, with exact error locations.

The outer levels of a scenario file (the top-level object, ``entities``, and the arrays
of entities) are walked here token by token over a sliding window of the file, so memory
stays bounded by the largest single value (or batch of entities), not the file.

Entities are read in two ways:

- **in batches** (the fast way): about a megabyte of an entity array at a time is cut at a
  place that looks like the end of an entity (``}`` then ``,`` or ``]``) and parsed at once
  by orjson. If the cut was not between two entities (it fell inside a string or a nested
  list), the text is not valid JSON and orjson says so; the next place is tried. A parsed
  batch is kept only when orjson certainly read it as the exact parser would: no run of 19
  digits (an integer beyond 64 bits would become a float), no ``\\u003x`` escape, and as
  many ``:`` in the entities' encoded text as in the file's (a repeated key, which orjson
  would silently merge, loses at least one). Every value orjson accepts is otherwise read
  the same (it refuses NaN, infinities, lone surrogates and control characters).
- **one value at a time** (the exact way): by the standard library's C scanner
  (``raw_decode``), for everything else and for any stretch a batch could not take. It
  knows where each value starts, so its errors name the entity, line and column.

The exact scanner is set up to refuse what JSON allows but we must not accept silently:

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
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import orjson

from ..entities import MAX_DEPTH, MAX_INT_DIGITS, Encoded, json_path, too_deep
from ..errors import InvalidScenarioFileError

__all__ = ["JsonStream", "Event", "DECODER"]

READ_BYTES = 1 << 20  # bytes read from the file at a time (more while one value grows)
KEEP_CHARS = 1 << 20  # text already read is dropped from the window once it passes this
BATCH_CHARS = 1 << 20  # about this much of an entity array is parsed by orjson at once
_BATCH_TRIES = 4  # places tried to cut a batch before the exact reader takes over
_MAX_VALUE_CHARS = 256 << 20  # one value (an entity) larger than this is refused
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Where a batch may end: the close of an object, then the array's ']', or ',' and the
# next object (a ',' and a key would be a member of a nested object, never a boundary).
_BOUNDARY = re.compile(r"\}[ \t\n\r]*(?:\]|(,)[ \t\n\r]*\{)")
# A value parsed (or failing) this close to the window's end may be cut short by it:
# longer than any escape (\uD83D\uDE00) or literal (-Infinity).
_MARGIN = 64
_DIGITS_TO_NUL = bytes.maketrans(b"0123456789", b"\0" * 10)  # JSON text holds no raw NUL
_LONG_NUMBER = b"\0" * 19  # 19 digits in a row: maybe an integer beyond 64 bits


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

EventKind = Literal["field", "list", "item", "batch", "end"]


class Event(NamedTuple):
    """One step of :meth:`JsonStream.walk`.

    ``kind`` is ``field`` (a top-level member returned whole: ``key``, ``value``),
    ``list`` (an array of candidate entities starts: ``key``; ``value`` is True inside
    ``entities``, False at the top level), ``item`` (one element: ``value``), ``batch``
    (consecutive elements read at once: ``value`` is a list of
    :class:`~healthsim.state.entities.Encoded` ``(object, compact JSON text, False)``, the
    text orjson's, of a value checked to be exactly the file's) or
    ``end`` (the array ended). ``pos`` is where the value (or batch) starts, counted in
    characters from the start of the file; :meth:`JsonStream.location` turns it into a
    line and column until the next event is taken. ``path`` of a batch is its first
    element's.
    """

    kind: EventKind
    key: str | None
    value: Any
    path: str
    pos: int


class _Batch(NamedTuple):
    items: list[Encoded]  # (entity, compact text, False)
    more: bool  # the array goes on after the batch (it ended at ',', not ']')


class JsonStream:
    """Walk a JSON scenario file from disk with bounded memory.

    Positions held outside a method (event positions, ``value_start``, error locations)
    count characters from the start of the file, so dropping read text from the window
    never makes them stale.

    Args:
        path: the file (named in every error).
        file: the file opened in binary mode. A UTF-8 byte-order mark is skipped.
        read_bytes: bytes read at a time (tests use tiny reads to cross every boundary).
        keep_chars: read text is dropped from the window once more than this (and more
            than half the window) lies before the position.
        batch_chars: the size of the batches of entities parsed at once; 0 reads every
            value the exact way.
    """

    def __init__(
        self,
        path: Path,
        file: BinaryIO,
        *,
        read_bytes: int = READ_BYTES,
        keep_chars: int = KEEP_CHARS,
        batch_chars: int = BATCH_CHARS,
    ) -> None:
        self.path = path
        self._file = file
        self._read_bytes = read_bytes
        self._keep_chars = keep_chars
        self._batch_chars = batch_chars
        # utf-8-sig: a leading byte-order mark is skipped, as json.loads does for bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self._buf = ""
        self._pos = 0  # in the window
        self._offset = 0  # characters dropped from the window: file position of _buf[0]
        self._eof = False
        self._bytes_read = 0
        # Line/column bookkeeping of the dropped text.
        self._dropped_lines = 0
        self._dropped_tail = 0  # characters after the last newline in the dropped text
        self._exact_until = 0  # file position before which batches are not tried
        self.value_start = 0  # file position where the last parsed value began

    # ------------------------------------------------------------------ the window

    def _fill(self, at_least: int = 0) -> bool:
        """Read more of the file into the window; False at end of file.

        May drop text before the position from the window: window indexes held across
        a call are stale afterwards (file positions are not).
        """
        if self._eof:
            return False
        if self._pos > self._keep_chars and self._pos > len(self._buf) // 2:
            dropped = self._buf[: self._pos]
            newlines = dropped.count("\n")
            if newlines:
                self._dropped_lines += newlines
                self._dropped_tail = len(dropped) - dropped.rfind("\n") - 1
            else:
                self._dropped_tail += len(dropped)
            self._offset += self._pos
            self._buf = self._buf[self._pos :]
            self._pos = 0
        chunk = self._file.read(max(self._read_bytes, at_least))
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

    def position(self) -> int:
        """The current position, in characters from the start of the file."""
        return self._offset + self._pos

    def location(self, pos: int | None = None) -> str:
        """``line L column C`` of a file position (default: the current one)."""
        at = self._pos if pos is None else pos - self._offset
        if at < 0:  # no longer in the window (callers ask before reading on)
            return f"character {pos + 1}" if pos is not None else "line ? column ?"
        before = self._buf[:at]
        newlines = before.count("\n")
        if newlines:
            column = at - before.rfind("\n")
        else:
            column = self._dropped_tail + at + 1
        return f"line {self._dropped_lines + newlines + 1} column {column}"

    def where(self, path: str, pos: int | None = None) -> str:
        """``path (line L column C)``: how errors say where a value is."""
        return f"{path} ({self.location(pos)})"

    def _error(self, problem: str, path: str, pos: int | None = None) -> InvalidScenarioFileError:
        return InvalidScenarioFileError(self.path, problem, self.where(path, pos))

    def _skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at end of file)."""
        while True:
            self._pos = _WHITESPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
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
        """Parse the JSON value at the current position (the exact way)."""
        self._skip_ws()
        while True:
            start = self._pos
            begin = self._offset + start  # file positions survive a refill; indexes do not
            try:
                value, end = DECODER.raw_decode(self._buf, start)
            except json.JSONDecodeError as exc:
                failed_at = self._offset + exc.pos
                cut = exc.pos >= len(self._buf) - _MARGIN or exc.msg.startswith("Unterminated string")
                if cut and self._grow(path, start):
                    continue
                raise self._error(f"invalid JSON: {exc.msg}", path, failed_at) from None
            except _DuplicateKey as exc:
                raise self._error(f"an object has the key {exc.key!r} twice", path, begin) from None
            except _Constant as exc:
                raise self._error(f"{exc.name} is not a JSON number; use null or a number", path, begin) from None
            except RecursionError:
                raise self._error(f"nesting is deeper than {MAX_DEPTH} levels", path, begin) from None
            except ValueError:  # Python's limit on integer digits
                raise self._error(f"an integer is longer than {MAX_INT_DIGITS} digits", path, begin) from None
            if end > len(self._buf) - _MARGIN:
                finished_at = self._offset + end
                if self._grow(path, start):
                    continue  # a number (1.5e-7) or escape cut by the window's end: read on
                end = finished_at - self._offset
            self._pos = end
            self.value_start = begin
            return value

    def _grow(self, path: str, start: int) -> bool:
        """Read more for a value that starts at window index ``start`` and may be cut.

        Reads at least as much as the value has so far, so a large value is parsed a
        logarithmic number of times: linear time in its size, not quadratic.
        """
        so_far = len(self._buf) - start
        if so_far > _MAX_VALUE_CHARS:
            raise self._error(f"a single value is larger than {_MAX_VALUE_CHARS >> 20} MB", path, self._offset + start)
        return self._fill(at_least=so_far)

    def _key(self, path: str) -> str:
        if self._skip_ws() != '"':
            raise self._error("expected a member name in double quotes", path)
        key = self.value(path)
        self._expect(":", path, "':' after a member name")
        return key

    # ------------------------------------------------------------------ batches

    def _batch(self) -> _Batch | None:
        """Entities from the current position (an object's ``{``) read in one batch, or
        None when the exact reader must take the next stretch."""
        if self._batch_chars <= 0 or self.position() < self._exact_until:
            return None
        while len(self._buf) - self._pos < 2 * self._batch_chars and self._fill(self._batch_chars):
            pass  # (a refill may move the window: indexes are taken after it)
        start = self._pos
        search = min(start + self._batch_chars, len(self._buf))
        stop = len(self._buf)  # what the exact reader takes if no batch works
        for _ in range(_BATCH_TRIES):
            match = _BOUNDARY.search(self._buf, search)
            # No place to cut before the window's end: near the end of the file, where
            # the array's own end is in the window (handled below).
            end = len(self._buf) if match is None else match.start() + 1
            stop = len(self._buf) if match is None else match.end()
            text = self._buf[start:end].encode("utf-8")
            try:
                values = orjson.loads(b"[" + text + b"]")
            except orjson.JSONDecodeError as exc:
                inside = exc.pos - 1  # orjson counts characters, from the '[' added
                if inside >= end - start:
                    if match is None:
                        break
                    search = match.end()  # cut inside a string or a nested list: try further on
                    continue
                # A problem in the text, or the array ended inside it (its ']' closed the
                # '[' added, and the next member followed): then take the array's rest.
                return self._last_batch(start, start + inside)
            items = _checked(text, values) if match is not None else None
            if items is None or match is None:
                break
            more = match.group(1) is not None
            self._pos = match.end() - 1 if more else match.start() + 1  # at '{', or before ']'
            return _Batch(items, more)
        self._exact_until = self._offset + max(stop, start + 1)
        return None

    def _last_batch(self, start: int, stop: int) -> _Batch | None:
        """The array's last entities, from ``start`` to its ``]`` just before ``stop``,
        in one batch; None (the exact reader takes them) if that is not what is there."""
        head = self._buf[start:stop].rstrip(" \t\r\n")
        if head.endswith("]"):
            text = head[:-1].encode("utf-8")
            try:
                items = _checked(text, orjson.loads(b"[" + text + b"]"))
            except orjson.JSONDecodeError:
                items = None
            if items:
                self._pos = start + len(head) - 1  # at the ']'
                return _Batch(items, False)
        self._exact_until = self._offset + max(stop, start + 1)
        return None

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
            key_pos = self.position()
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
                first = self._skip_ws()
                begin = self.position()
                if first == "{" and (batch := self._batch()) is not None:
                    yield Event("batch", None, batch.items, f"{path}[{index}]", begin)
                    index += len(batch.items)
                    if batch.more:
                        continue  # the next entity follows the batch's ','
                else:
                    item_path = f"{path}[{index}]"
                    value = self.value(item_path)
                    yield Event("item", None, value, item_path, self.value_start)
                    index += 1
                if self._expect(",]", path, "',' or ']'") == "]":
                    break
        yield Event("end", None, None, path, self.position())

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
                    yield Event("list", entity_type, True, type_path, self.position())
                    yield from self._items(type_path)
            elif first == "[" and streamed(key):
                yield Event("list", key, False, path, self.position())
                yield from self._items(path)
            else:
                value = self.value(path)
                yield Event("field", key, value, path, self.value_start)
        following = self._skip_ws()
        if following == "{":  # one object per line: NDJSON, as FHIR Bulk Data is written
            raise self._error(
                "unexpected data after the end of the JSON object: another object follows, as in NDJSON "
                "(one object per line); FHIR Bulk Data imports with format='fhir'",
                "$",
            )
        if following != "":
            raise self._error("unexpected data after the end of the JSON object", "$")


def _checked(text: bytes, values: list[Any]) -> list[Encoded] | None:
    """Entities orjson parsed from ``text`` with their compact text, if certainly exact.

    None when the exact reader must decide: an element is not an object or nests too
    deeply, an integer may lie beyond 64 bits, an escape may hide a ':', or a key was
    repeated (orjson keeps one of them, so the encoded text has fewer ':' than the file:
    strings come back unchanged, and only ``\\u003a`` could add one).
    """
    if b"\\u003" in text or text.translate(_DIGITS_TO_NUL).find(_LONG_NUMBER) >= 0:
        return None
    if not all(type(value) is dict for value in values):
        return None
    texts = list(map(orjson.dumps, values))
    if any(t.count(b"{") + t.count(b"[") > MAX_DEPTH and too_deep(t) for t in texts):
        return None
    if b"".join(texts).count(b":") != text.count(b":"):
        return None
    return list(map(Encoded, values, texts, itertools.repeat(False)))
