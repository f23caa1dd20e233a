"""The ``.vsv`` container: a versioned header and append-only, CRC-checked records.

The format is specified field by field in ``docs/FORMAT.md``; this module is
its only implementation. It knows nothing of torch or of the codec: frame
payloads are opaque bytes.

Design points:

* Every record starts with a 4-byte sync word, so a reader that meets a
  damaged record can find the next one (``recover=True``).
* Records are only ever appended. A writer killed at any byte leaves a file
  whose complete records all read back; the reader stops at the torn tail
  with a warning.
* The index (pts -> byte offset of frames that stand alone) is written as the
  last record, followed by a fixed 16-byte footer pointing at it. A file
  without a valid footer is readable, just not seekable without a scan.
* No pickle anywhere; every length is checked against a limit and against
  the bytes that remain before anything is allocated.
"""

from __future__ import annotations

import json
import os
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import FormatError, OutputError

MAGIC = b"\x89VSV\r\n\x1a\n"
VERSION = 1
SYNC = b"VSr\x01"
FOOTER_MAGIC = b"VSVINDX1"

REC_FRAME = 1
REC_SKIP = 2
REC_SEGMENT = 3
REC_GAP = 4
REC_META = 5
REC_INDEX = 6
RECORD_NAMES = {REC_FRAME: "frame", REC_SKIP: "skip", REC_SEGMENT: "segment", REC_GAP: "gap",
                REC_META: "meta", REC_INDEX: "index"}

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 256 << 20
MAX_SKIP = 1 << 20

_HDR_FIXED = struct.Struct("<8sHI")  # magic, version, json length
_REC_HEAD = struct.Struct("<4sBI")  # sync, type, payload length
_CRC = struct.Struct("<I")
_FRAME_HEAD = struct.Struct("<qfBq")  # pts, quality, flags, reference pts
_FOOTER = struct.Struct("<Q8s")  # offset of the index record, magic

FLAG_INTRA = 1


class TruncatedWarning(UserWarning):
    pass


class CorruptRecordWarning(UserWarning):
    pass


@dataclass
class FrameRecord:
    pts: int
    quality: float
    payload: bytes
    intra: bool = True
    ref_pts: int = -1  # pts of the frame this one is predicted from; -1 when intra
    offset: int = -1


@dataclass
class SkipRecord:
    pts: list[int]
    offset: int = -1


@dataclass
class JsonRecord:
    kind: int
    data: dict
    offset: int = -1

    @property
    def name(self) -> str:
        return RECORD_NAMES[self.kind]


@dataclass
class IndexRecord:
    entries: list[tuple[int, int]]  # (pts, offset) of frames that stand alone
    offset: int = -1


Record = FrameRecord | SkipRecord | JsonRecord | IndexRecord


def creation_time() -> float:
    """Now, or ``SOURCE_DATE_EPOCH`` where it is set (the reproducible-builds convention), so that a file
    can be made byte for byte again."""
    fixed = os.environ.get("SOURCE_DATE_EPOCH")
    if fixed:
        try:
            return float(int(fixed))
        except ValueError:
            pass
    return time.time()


@dataclass
class Header:
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    model: str
    weights_sha256: str
    created: float = field(default_factory=creation_time)
    metadata: dict = field(default_factory=dict)
    #: How the frame payloads depend on each other, for the decoder (opaque here; empty: each stands alone).
    stream: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {
            "width": self.width, "height": self.height,
            "fps": [self.fps.numerator, self.fps.denominator],
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "model": self.model, "weights_sha256": self.weights_sha256,
            # Whole seconds: a header's length, and so every offset after it, then does not vary with the clock.
            "created": int(self.created), "metadata": self.metadata,
        }
        if self.stream:
            d["stream"] = self.stream
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Header":
        try:
            h = cls(width=int(d["width"]), height=int(d["height"]),
                    fps=Fraction(int(d["fps"][0]), int(d["fps"][1])),
                    time_base=Fraction(int(d["time_base"][0]), int(d["time_base"][1])),
                    model=str(d["model"]), weights_sha256=str(d["weights_sha256"]),
                    created=float(d.get("created", 0.0)), metadata=dict(d.get("metadata") or {}),
                    stream=dict(d.get("stream") or {}))
        except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError) as exc:
            raise FormatError(f"invalid .vsv header: {exc}") from None
        if not (0 < h.width <= 65536 and 0 < h.height <= 65536):
            raise FormatError(f"invalid .vsv header: frame size {h.width}x{h.height}")
        return h


# -- writing ------------------------------------------------------------------------
class ContainerWriter:
    """Appends records to a ``.vsv`` file.

    With ``atomic=True`` (the default) the data go to ``.NAME.part`` and take
    the final name only in :meth:`close`, so a file under its final name is
    always complete. ``fsync_interval`` bounds how much a power cut can lose
    (seconds; ``None`` never syncs before close, 0 syncs every record).
    """

    def __init__(self, path: str | os.PathLike, header: Header, atomic: bool = True,
                 fsync_interval: float | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part") if atomic else self.path
        self.fsync_interval = fsync_interval
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f: BinaryIO = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.header = header
        self.index: list[tuple[int, int]] = []
        self.records = 0
        self.frame_bytes = 0
        self._last_sync = time.monotonic()
        self.closed = False
        hjson = json.dumps(header.to_json(), separators=(",", ":")).encode()
        if len(hjson) > MAX_HEADER:
            raise ValueError("header metadata too large")
        head = _HDR_FIXED.pack(MAGIC, VERSION, len(hjson)) + hjson
        self._write(head + _CRC.pack(zlib.crc32(head[8:])))
        self.flush(sync=fsync_interval is not None)

    @property
    def bytes_written(self) -> int:
        return self.f.tell()

    def _write(self, data: bytes) -> None:
        try:
            self.f.write(data)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _record(self, kind: int, payload: bytes) -> int:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"record payload of {len(payload)} bytes exceeds the format limit")
        offset = self.f.tell()
        head = _REC_HEAD.pack(SYNC, kind, len(payload))
        crc = zlib.crc32(payload, zlib.crc32(head[4:]))
        self._write(head + payload + _CRC.pack(crc))
        self.records += 1
        if self.fsync_interval is not None:
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_interval:
                self.flush(sync=True)
        return offset

    def write_frame(self, pts: int, quality: float, payload: bytes, ref_pts: int | None = None) -> int:
        intra = ref_pts is None
        head = _FRAME_HEAD.pack(int(pts), float(quality), FLAG_INTRA if intra else 0,
                                -1 if intra else int(ref_pts))
        off = self._record(REC_FRAME, head + payload)
        if intra:
            self.index.append((int(pts), off))
        self.frame_bytes += len(payload)
        return off

    def write_skip(self, pts_list: list[int]) -> int:
        if not pts_list:
            return -1
        return self._record(REC_SKIP, struct.pack(f"<I{len(pts_list)}q", len(pts_list), *map(int, pts_list)))

    def write_json(self, kind: int, data: dict) -> int:
        assert kind in (REC_SEGMENT, REC_GAP, REC_META)
        return self._record(kind, json.dumps(data, separators=(",", ":")).encode())

    def write_segment(self, data: dict) -> int:
        return self.write_json(REC_SEGMENT, data)

    def write_gap(self, data: dict) -> int:
        return self.write_json(REC_GAP, data)

    def flush(self, sync: bool = False) -> None:
        try:
            self.f.flush()
            if sync:
                os.fsync(self.f.fileno())
                self._last_sync = time.monotonic()
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.closed:
            return
        payload = struct.pack("<I", len(self.index)) + b"".join(struct.pack("<qQ", p, o) for p, o in self.index)
        off = self._record(REC_INDEX, payload)
        self._write(_FOOTER.pack(off, FOOTER_MAGIC))
        self.flush(sync=True)
        self.f.close()
        self.closed = True
        if self.tmp != self.path:
            os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop the unfinished file (atomic mode) and release the handle."""
        if self.closed:
            return
        self.closed = True
        try:
            self.f.close()
        except OSError:
            pass
        if self.tmp != self.path:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# -- reading ------------------------------------------------------------------------
class ContainerReader:
    """Reads a ``.vsv`` file, whole or cut off, and optionally past damage.

    Args:
        path: the file.
        recover: on a damaged record, skip to the next valid record instead of
            raising :class:`FormatError`.

    Attributes after :meth:`records` has run to the end: ``truncated_at``
    (byte offset of a torn tail, or ``None``), ``damaged`` (list of
    ``(offset, reason)``), ``has_index`` (the file was closed cleanly).
    """

    def __init__(self, path: str | os.PathLike, recover: bool = False):
        self.path = Path(path)
        self.recover = recover
        try:
            self.f = open(self.path, "rb")
        except FileNotFoundError:
            raise FormatError(f"input not found: {self.path}") from None
        except IsADirectoryError:
            raise FormatError(f"input is a directory, not a .vsv file: {self.path}") from None
        except OSError as exc:
            raise FormatError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self.size = os.fstat(self.f.fileno()).st_size
        self.truncated_at: int | None = None
        self.damaged: list[tuple[int, str]] = []
        self.has_index = False
        self.header = self._read_header()
        self.data_start = self.f.tell()

    def _read_header(self) -> Header:
        fixed = self.f.read(_HDR_FIXED.size)
        if len(fixed) < 8 or fixed[:8] != MAGIC:
            raise FormatError(f"{self.path} is not a vidsieve .vsv file (bad magic)")
        if len(fixed) < _HDR_FIXED.size:
            raise FormatError(f"{self.path} is truncated inside its header")
        _, version, n = _HDR_FIXED.unpack(fixed)
        if version != VERSION:
            raise FormatError(f"{self.path}: unsupported .vsv version {version} (this reader knows {VERSION})")
        if n > MAX_HEADER or n > self.size - _HDR_FIXED.size - 4:
            raise FormatError(f"{self.path} is truncated or corrupt inside its header")
        body = self.f.read(n)
        (crc,) = _CRC.unpack(self.f.read(4))
        if zlib.crc32(body, zlib.crc32(fixed[8:])) != crc:
            raise FormatError(f"{self.path}: header checksum mismatch at byte 0")
        try:
            d = json.loads(body.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{self.path}: header is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise FormatError(f"{self.path}: header is not a JSON object")
        return Header.from_json(d)

    def _parse(self, kind: int, payload: bytes, offset: int) -> Record:
        if kind == REC_FRAME:
            if len(payload) < _FRAME_HEAD.size:
                raise ValueError("frame record too short")
            pts, q, flags, ref = _FRAME_HEAD.unpack_from(payload)
            return FrameRecord(pts=pts, quality=q, payload=payload[_FRAME_HEAD.size:],
                               intra=bool(flags & FLAG_INTRA), ref_pts=ref, offset=offset)
        if kind == REC_SKIP:
            (n,) = struct.unpack_from("<I", payload)
            if n > MAX_SKIP or len(payload) != 4 + 8 * n:
                raise ValueError("skip record length mismatch")
            return SkipRecord(pts=list(struct.unpack_from(f"<{n}q", payload, 4)), offset=offset)
        if kind in (REC_SEGMENT, REC_GAP, REC_META):
            d = json.loads(payload.decode())
            if not isinstance(d, dict):
                raise ValueError("JSON record is not an object")
            return JsonRecord(kind=kind, data=d, offset=offset)
        if kind == REC_INDEX:
            (n,) = struct.unpack_from("<I", payload)
            if len(payload) != 4 + 16 * n:
                raise ValueError("index record length mismatch")
            vals = struct.unpack_from(f"<{2 * n}q", payload, 4) if n else ()
            return IndexRecord(entries=list(zip(vals[0::2], vals[1::2])), offset=offset)
        raise ValueError(f"unknown record type {kind}")

    def _try_record(self, offset: int) -> tuple[Record | None, int, str | None]:
        """(record, next offset, error). ``error == 'eof'`` marks a torn tail."""
        self.f.seek(offset)
        head = self.f.read(_REC_HEAD.size)
        if len(head) < _REC_HEAD.size:
            return None, offset, "eof"
        sync, kind, n = _REC_HEAD.unpack(head)
        if sync != SYNC:
            # A writer killed inside the footer leaves a short tail that is no record.
            if self.size - offset < _FOOTER.size:
                return None, offset, "eof"
            return None, offset, "bad sync word"
        if kind not in RECORD_NAMES:
            return None, offset, f"unknown record type {kind}"
        if n > MAX_PAYLOAD:
            return None, offset, f"record length {n} exceeds the format limit"
        end = offset + _REC_HEAD.size + n + 4
        if end > self.size:
            return None, offset, "eof"
        payload = self.f.read(n)
        (crc,) = _CRC.unpack(self.f.read(4))
        if zlib.crc32(payload, zlib.crc32(head[4:])) != crc:
            return None, offset, "checksum mismatch"
        try:
            rec = self._parse(kind, payload, offset)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            return None, offset, f"malformed {RECORD_NAMES[kind]} record: {exc}"
        return rec, end, None

    def _footer_offset(self) -> int:
        """Where the records end: before the footer of a cleanly closed file."""
        if self.size >= self.data_start + _FOOTER.size:
            self.f.seek(self.size - _FOOTER.size)
            off, magic = _FOOTER.unpack(self.f.read(_FOOTER.size))
            if magic == FOOTER_MAGIC and self.data_start <= off < self.size - _FOOTER.size:
                return self.size - _FOOTER.size
        return self.size

    def records(self, start: int | None = None) -> Iterator[Record]:
        """Every record in file order (the trailing index included), from the record at byte ``start``
        (an index entry's offset) when given."""
        end_of_records = self._footer_offset()
        saved_size, self.size = self.size, end_of_records
        try:
            offset = self.data_start if start is None else start
            if start is not None and not self.data_start <= start < self.size:
                raise FormatError(f"{self.path}: no record at byte {start}")
            while offset < self.size:
                rec, nxt, err = self._try_record(offset)
                if err == "eof" and self._resync(offset + 1) < self.size:
                    err = "record length runs past the end of the file"
                if err == "eof":
                    self.truncated_at = offset
                    warnings.warn(f"{self.path} is cut off at byte {offset}: "
                                  f"read every complete record before it", TruncatedWarning, stacklevel=2)
                    return
                if err:
                    self.damaged.append((offset, err))
                    if not self.recover:
                        raise FormatError(f"{self.path}: corrupt record at byte {offset} ({err}); "
                                          f"use --recover to skip past it")
                    nxt = self._resync(offset + 1)
                    warnings.warn(f"{self.path}: skipped damaged bytes {offset}..{nxt} ({err})",
                                  CorruptRecordWarning, stacklevel=2)
                    if nxt >= self.size:
                        return
                    offset = nxt
                    continue
                if isinstance(rec, IndexRecord):
                    self.has_index = end_of_records != saved_size and nxt == end_of_records
                yield rec
                offset = nxt
        finally:
            self.size = saved_size

    def _resync(self, start: int) -> int:
        """Offset of the next record that parses and checks, or the end of file."""
        self.f.seek(start)
        buf = self.f.read()
        pos = 0
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                return self.size
            rec, _, err = self._try_record(start + i)
            if err is None:
                return start + i
            pos = i + 1

    def read_index(self) -> list[tuple[int, int]] | None:
        """The trailing index of a cleanly closed file, read without a scan."""
        if self._footer_offset() == self.size:
            return None
        self.f.seek(self.size - _FOOTER.size)
        off, _ = _FOOTER.unpack(self.f.read(_FOOTER.size))
        saved = self.size
        self.size -= _FOOTER.size
        try:
            rec, _, err = self._try_record(off)
        finally:
            self.size = saved
        return rec.entries if isinstance(rec, IndexRecord) and err is None else None

    def frame_at(self, offset: int) -> FrameRecord:
        rec, _, err = self._try_record(offset)
        if err or not isinstance(rec, FrameRecord):
            raise FormatError(f"{self.path}: no valid frame record at byte {offset}")
        return rec

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()
