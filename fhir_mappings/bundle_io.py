"""Reading FHIR resources from a Bundle or NDJSON file, and writing outputs all-or-nothing."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import orjson

from plugin.errors import BadRequest
from plugin.jsontypes import Json


class InputError(BadRequest):
    """Input that is not JSON or not FHIR; the message names the file and the position."""


def read_resources(path: str) -> Iterator[tuple[Json, str | None]]:
    """Yield (resource, fullUrl) from a Bundle of any type, a single resource, or NDJSON.

    `-` reads standard input. NDJSON (one resource per line, as a Bulk Data export writes it)
    is streamed line by line, so a large export is never held whole.
    """
    for _, resource, full_url in read_chosen(path):
        yield resource, full_url


def read_chosen(
    path: str, chosen: Callable[[int], bool] | None = None
) -> Iterator[tuple[int, Json, str | None]]:
    """(position, resource, fullUrl) of each resource `read_resources` yields — the position
    counted as it counts them — that `chosen` accepts (all when None). An NDJSON line not
    chosen is not parsed: for a second pass over a file whose first pass checked every line
    (a large file decided in parts, plugin.pipeline.files)."""
    name = "stdin" if path == "-" else path
    try:
        handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror})") from exc
    with handle if path != "-" else contextlib.nullcontext(handle):
        first, number = handle.readline(), 1  # its line's number, blank lines counted
        while first and not first.strip():
            first, number = handle.readline(), number + 1
        if not first:
            raise InputError(f"{name}: empty input: expected a Bundle or NDJSON resources")
        single = _single_line_resource(first)
        rest, skipped = handle.readline() if single is not None else b"", 0
        while rest and not rest.strip():
            rest, skipped = handle.readline(), skipped + 1
        if single is not None and (rest or single.get("resourceType") != "Bundle"):
            yield from _ndjson(name, (single, number), (rest, number + skipped), handle, chosen)
        else:
            for at, found in enumerate(_whole(name, first + rest + handle.read())):
                if chosen is None or chosen(at):
                    yield at, *found


def _single_line_resource(line: bytes) -> Json | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _ndjson(
    name: str,
    first: tuple[Json, int],
    second: tuple[bytes, int],
    handle: IO[bytes],
    chosen: Callable[[int], bool] | None,
) -> Iterator[tuple[int, Json, None]]:
    """The resources of an NDJSON file: `first` read already (and its line's number),
    `second` the next line that is not blank (and the number of the line before it)."""
    if chosen is None or chosen(0):
        yield 0, _resource(first[0], f"{name}: line {first[1]}"), None
    second_line, number = second  # the line's number in the file, blank lines counted
    at = 0  # the resource's position, blank lines not counted
    for line in _lines(second_line, handle):
        number += 1
        if not line.strip():
            continue
        at += 1
        if chosen is not None and not chosen(at):
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{name}: line {number}: not valid JSON ({exc})") from exc
        yield at, _resource(value, f"{name}: line {number}"), None


def _lines(second: bytes, handle: IO[bytes]) -> Iterator[bytes]:
    if second:
        yield second
    yield from handle


def _whole(name: str, data: bytes) -> Iterator[tuple[Json, str | None]]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from exc
    resource = _resource(value, name)
    if resource.get("resourceType") != "Bundle":
        yield resource, None
        return
    entries = resource.get("entry") or []
    if not isinstance(entries, list):
        raise InputError(f"{name}: Bundle.entry: expected a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "resource" not in entry:
            continue  # e.g. a transaction-response entry: nothing to read
        found = _resource(entry["resource"], f"{name}: Bundle.entry[{index}].resource")
        full_url = entry.get("fullUrl")
        yield found, full_url if isinstance(full_url, str) else None


def _resource(value: object, where: str) -> Json:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise InputError(f"{where}: not a FHIR resource (no resourceType)")
    return value


@contextlib.contextmanager
def atomic_output(path: str | None) -> Iterator[IO[bytes] | None]:
    """A file that appears complete at `path` or not at all; `-` is standard output.

    A regular file (or a new one) is written to a temporary file beside it and renamed into place
    only when the block ends without an exception (docs/architecture.md "Errors": nothing is lost or
    half-written), keeping the old file's permissions. A symbolic link is followed: the file it
    points to is replaced, the link stays a link. Anything else that exists (a device such as
    /dev/null, a FIFO, a terminal) cannot be replaced and is written straight to: renaming a file
    over /dev/null would replace the system's /dev/null.
    """
    if path is None:
        yield None
        return
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(os.path.realpath(path))
    try:
        existing = target.stat()
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(target, "wb") as stream:
            yield stream
        return
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if existing is not None:
            os.chmod(temp, stat.S_IMODE(existing.st_mode))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class JsonArrayWriter:
    """Writes `prefix [item, item, …] suffix` one item at a time (a streamed Bundle or report)."""

    def __init__(self, handle: IO[bytes] | None, prefix: bytes, suffix: bytes) -> None:
        self.handle = handle
        self.suffix = suffix
        self.count = 0
        if handle is not None:
            handle.write(prefix)

    def write(self, item: Json) -> None:
        if self.handle is not None:
            self.write_raw(orjson.dumps(item))

    def write_raw(self, item: bytes) -> None:
        """Write one item already serialized as JSON."""
        if self.handle is None:
            return
        if self.count:
            self.handle.write(b",\n")
        self.handle.write(item)
        self.count += 1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.write(self.suffix)
