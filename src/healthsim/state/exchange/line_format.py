"""The fast reader for files in the export's own layout (one entity per line).

:mod:`.export` writes a header line, a line per entity type, and a line per entity. This
reader takes such a file line by line: each entity line is parsed with orjson and
encoded again; when that gives back the very same bytes, the line cannot hold a
duplicate key (orjson keeps one of them, so the text would shrink), a NaN (orjson
refuses it) or an integer beyond 64 bits (it would come back as a float), and it is
stored as it is. Lines that differ (other spacing, escapes, big integers) are checked by
the exact parser and stored as they are too, so entity text survives an
export → import → export round trip byte for byte.

Anything unexpected raises :class:`NotLineLayout` — not an error for the user: the
importer then reads the file with the general reader, which either imports it or
reports the problem with its JSON path and line/column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..entities import Encoded, UnrepresentableValue, encode_fast, to_plain
from .json_stream import DECODER

__all__ = ["NotLineLayout", "LineLayoutReader", "HEADER_PREFIX"]

HEADER_PREFIX = b'{"schema_version":"1.'
_ENTITIES_OPEN = b'"entities":{'
_TYPE_LINE = re.compile(rb'("(?:[^"\\]|\\.)*"):\[(\])?(,)?')
_BLANK = re.compile(rb"[ \t\r\n]*")


class NotLineLayout(Exception):
    """The file does not follow the export's line layout; read it with the general reader."""


class LineLayoutReader:
    """Read a file written by :func:`~healthsim.state.exchange.export.export_scenario`.

    Args:
        path: the file, for messages.
        file: the file opened in binary mode, at its start.

    Raises:
        NotLineLayout: the first line is not an export header.
    """

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        if file.read(len(HEADER_PREFIX)) != HEADER_PREFIX:  # before reading a line that
            raise NotLineLayout  # may be the whole file (JSON on one line)
        file.seek(0)
        first = file.readline()
        if not first.startswith(HEADER_PREFIX) or not first.endswith(_ENTITIES_OPEN + b"\n"):
            raise NotLineLayout
        try:
            header = DECODER.decode((first[:-1] + b"}}").decode("utf-8"))
        except (ValueError, RecursionError):
            raise NotLineLayout from None
        if header.pop("entities") != {}:
            raise NotLineLayout
        self.fields: dict[str, Any] = header
        self._lines = iter(file)

    def _next(self) -> bytes:
        line = next(self._lines, None)
        if line is None or not line.endswith(b"\n"):
            raise NotLineLayout  # the layout always ends lines with \n, the last included
        return line[:-1]

    def lists(self) -> Iterator[tuple[str, Iterator[Encoded]]]:
        """Yield ``(type key, entities)``; exhaust each entity iterator before the next."""
        seen: set[str] = set()
        more = True  # the previous list line ended with ',' (or this is the first)
        while True:
            line = self._next()
            if line == b"}}":
                if more and seen:
                    raise NotLineLayout  # "],\n}}" would be a trailing comma
                # Nothing but whitespace may follow the document, however far away.
                while rest := self._file.read(1 << 16):
                    if _BLANK.fullmatch(rest) is None:
                        raise NotLineLayout
                return
            match = _TYPE_LINE.fullmatch(line)
            if match is None or not more:
                raise NotLineLayout
            try:
                key = orjson.loads(match.group(1))
            except orjson.JSONDecodeError:
                raise NotLineLayout from None
            if key in seen:
                raise NotLineLayout
            seen.add(key)
            if match.group(2):  # "type":[] on one line
                more = bool(match.group(3))
                yield key, iter(())
                continue
            if match.group(3):
                raise NotLineLayout
            closing: list[bool] = []
            yield key, self._items(closing)
            if not closing:
                raise NotLineLayout  # the consumer stopped early
            more = closing[0]

    def _items(self, closing: list[bool]) -> Iterator[Encoded]:
        loads, fast = orjson.loads, encode_fast
        expect_item = True  # after '[' or an item line ending with ','
        while True:
            line = self._next()
            if line == b"]" or line == b"],":
                if expect_item:
                    raise NotLineLayout  # empty lists are one line; no trailing comma
                closing.append(line == b"],")
                return
            if not expect_item:
                raise NotLineLayout
            if line.endswith(b","):
                body = line[:-1]
            else:
                body = line
                expect_item = False
            try:
                obj = loads(body)
            except orjson.JSONDecodeError:
                yield self._exact(body)
                continue
            if type(obj) is not dict:
                raise NotLineLayout
            if fast(obj) == body:
                yield Encoded(obj, body, False)
            else:
                yield self._exact(body)

    @staticmethod
    def _exact(body: bytes) -> Encoded:
        """A line orjson could not reproduce: parse it exactly and keep its text."""
        try:
            obj = DECODER.decode(body.decode("utf-8"))
            to_plain(obj)
        except (ValueError, RecursionError, UnrepresentableValue):
            raise NotLineLayout from None
        if type(obj) is not dict:
            raise NotLineLayout
        return Encoded(obj, body, True)
