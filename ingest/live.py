"""``vidsieve ingest``: record a live stream as rolling ``.vsv`` segments on a small CPU box.

One loop around the compress road (:class:`vidsieve.pipeline.Compressor`):

* rolling segments of ``segment_seconds`` of stream time, named by their UTC
  start (``DIR/YYYY-MM-DD/HH/MM.SS.vsv``); the live one is ``.MM.SS.vsv.part``,
  readable at any moment, fsync'ed every ``fsync_interval`` seconds, renamed
  with its index when done;
* real time first: when the encoder falls behind the stream, keep fewer
  frames, then lower the quality, then analyse fewer frames, and past a hard
  limit skip frames unanalysed; nothing queues without bound;
* a dropped stream is retried with exponential backoff and marked as a gap;
* SIGINT/SIGTERM finish the current segment cleanly;
* retention by age and disk budget, idle segments first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable


from ..datasets.video import VideoReader
from ..errors import InputError
from ..pipeline import CompressOptions, Compressor, load_codec, make_selector
from ..rate import LagGuard

log = logging.getLogger(__name__)
INDEX = "segments.jsonl"
#: The longest activity segment (one quality, one entry of the event index) inside a file.
ACTIVITY_SEGMENT_SECONDS = 30.0


@dataclass
class IngestOptions:
    segment_seconds: float = 60.0
    keep_days: float | None = None
    max_disk: int | None = None  # bytes
    fsync_interval: float = 1.0
    lag_soft: float = 1.0  # seconds behind the stream before degrading
    lag_hard: float = 4.0  # seconds behind: frames are skipped unanalysed
    reconnect_max: float = 30.0
    max_reconnects: int | None = None  # None: forever
    realtime_files: bool = True  # pace local files at their frame rate, as a live source
    run_seconds: float | None = None  # stop after this much wall time (benchmarks)
    compress: CompressOptions = field(default_factory=CompressOptions)


class _Stop(Exception):
    pass


def segment_path(out_dir: Path, start: datetime) -> Path:
    """``DIR/YYYY-MM-DD/HH/MM.SS.vsv``; never the name of a file that exists (a finished one is never replaced)."""
    folder = out_dir / start.strftime("%Y-%m-%d") / start.strftime("%H")
    stem = start.strftime("%M.%S")
    path, n = folder / f"{stem}.vsv", 0
    while path.exists() or (folder / f".{path.name}.part").exists():
        n += 1
        path = folder / f"{stem}-{n}.vsv"
    return path


class Ingester:
    """One camera's ingestion. ``codec`` and ``detector``, when given, are shared with other cameras
    (:mod:`.cameras`): the codec's models are only read, and a stateless detector serves every camera; a
    stateful one (motion) is never shared, each camera's selector makes its own."""

    def __init__(self, url: str, out_dir: str | os.PathLike, opts: IngestOptions,
                 emit: Callable[[dict], None] | None = None, codec=None, detector=None, name: str | None = None,
                 turn=None):
        self.url = url
        self.name = name or url
        self.out = Path(out_dir)
        self.opts = opts
        self.emit = emit or (lambda d: print(json.dumps(d), flush=True))
        # Activity segments inside a file: never longer than the file, nor than ACTIVITY_SEGMENT_SECONDS.
        self.compress_opts = replace(opts.compress, segment_seconds=min(ACTIVITY_SEGMENT_SECONDS, opts.segment_seconds))
        self.codec = codec if codec is not None else load_codec(opts.compress.model,
                                                                precision=opts.compress.precision)
        self.detector = detector
        #: Held while a frame is analysed and coded: cameras sharing one take turns frame by frame, first
        #: come first served, so no camera's frames wait behind a run of another's.
        self.turn = turn if turn is not None else contextlib.nullcontext()
        #: Finished segments' counts; the live segment's are added by :meth:`snapshot`.
        self.done = {"frames_in": 0, "selected": 0, "coded": 0, "bytes": 0, "stream_s": 0.0}
        self.reconnects = 0
        self.state = "starting"
        self.stop = False
        self.comp: Compressor | None = None
        self.seg_info: dict = {}
        self.guard = LagGuard(opts.lag_soft, opts.lag_hard)
        self.lag = 0.0
        self.max_lag = 0.0
        self.selector = None
        self.conn_utc: datetime | None = None
        self.conn_t = 0.0

    # -- signals -----------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.stop = True
        log.info("signal %d: finishing the current segment", signum)

    def run(self, signals: bool = True) -> int:
        """Ingest until the source ends, :attr:`stop` is set or ``run_seconds`` pass; with ``signals``,
        SIGINT and SIGTERM set :attr:`stop` (the main thread's ingester only)."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if signals else {}
        try:
            return self._loop()
        finally:
            self._close_segment()
            self.state = "stopped"
            for s, h in old.items():
                signal.signal(s, h)

    def snapshot(self) -> dict:
        """What this camera is doing now: the status endpoint's row."""
        comp, d = self.comp, dict(self.done)
        if comp is not None:
            d["frames_in"] += comp.frames
            d["selected"] += comp.summary.selected
            d["coded"] += comp.coded
            d["bytes"] += comp.bytes_written
            if comp.first_pts is not None:
                d["stream_s"] += float((comp.last_pts - comp.first_pts) * comp.tb)
        used = sum(p.stat().st_size for p in self.out.rglob("*.vsv*") if p.is_file()) if self.out.exists() else 0
        try:
            free = shutil.disk_usage(self.out).free if self.out.exists() else None
        except OSError:
            free = None
        left = free if self.opts.max_disk is None else max(0, self.opts.max_disk - used)
        return {"camera": self.name, "state": self.state, "frames_in": d["frames_in"], "selected": d["selected"],
                "coded": d["coded"],
                "kept_share": round(d["selected"] / d["frames_in"], 4) if d["frames_in"] else None,
                "kbps": round(d["bytes"] * 8 / 1000 / d["stream_s"], 2) if d["stream_s"] > 0 else None,
                "lag_s": round(self.lag, 3), "lag_max_s": round(self.max_lag, 3),
                "degradation": self.guard.level, "degradation_words": LagGuard.WORDS[self.guard.level],
                "reconnects": self.reconnects, "disk_used_bytes": used, "disk_left_bytes": left}

    # -- main loop ----------------------------------------------------------------------
    def _open(self) -> VideoReader:
        options = {}
        if self.url.startswith("rtsp://"):
            options["rtsp_transport"] = "tcp"
        return VideoReader(self.url, options=options, timeout=(10.0, 5.0) if "://" in self.url else None)

    def _loop(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        backoff, attempts, gap_since = 1.0, 0, None
        t_start = time.monotonic()
        while not self.stop:
            try:
                reader = self._open()
            except InputError as exc:
                attempts += 1
                if self.opts.max_reconnects is not None and attempts > self.opts.max_reconnects:
                    self.state = "failed"
                    raise
                self.state = "reconnecting"
                self.reconnects += 1
                log.warning("%s: cannot open %s (%s); retrying in %.0f s", self.name, self.url, exc, backoff)
                gap_since = gap_since or time.time()
                self._sleep(backoff)
                backoff = min(backoff * 2, self.opts.reconnect_max)
                continue
            attempts = 0
            backoff = 1.0
            self.state = "running"
            try:
                self._consume(reader, gap_since, t_start)
                gap_since = None
            except _Stop:
                break
            finally:
                reader.close()
            if self.stop or not ("://" in self.url):
                break  # a file ends; a stream that ends is a drop
            log.warning("%s: stream %s ended; reconnecting", self.name, self.url)
            self.state = "reconnecting"
            self.reconnects += 1
            gap_since = time.time()
            self._close_segment()
        return 0

    def _sleep(self, s: float) -> None:
        end = time.monotonic() + s
        while not self.stop and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    def _consume(self, reader: VideoReader, gap_since: float | None, t_start: float) -> None:
        self.selector = make_selector(self.compress_opts, reader.time_base, detector=self.detector)
        self.selector.degrade(self.guard.level)
        self.conn_utc = None  # wall-clock UTC of this connection's first frame
        tb = reader.time_base
        wall0 = stream0 = None
        pace = self.opts.realtime_files and "://" not in self.url
        for frame in reader:
            if self.stop:
                raise _Stop
            if self.opts.run_seconds and time.monotonic() - t_start >= self.opts.run_seconds:
                raise _Stop
            t_s = float(frame.pts * tb)
            now = time.monotonic()
            if wall0 is None:
                wall0, stream0 = now, t_s
            if pace:
                ahead = (t_s - stream0) - (now - wall0)
                if ahead > 0:
                    time.sleep(ahead)
                    now = time.monotonic()
            self.lag = max(0.0, (now - wall0) - (t_s - stream0))
            self.max_lag = max(self.max_lag, self.lag)
            if self.guard.update(self.lag):
                log.warning("%s: lag %.1f s: %s", self.name, self.lag, LagGuard.WORDS[self.guard.level])
                self.selector.degrade(self.guard.level)
                if self.comp is not None:
                    self.comp.code_dropped = self.compress_opts.code_dropped and self.guard.level == 0
            if self.comp is None or t_s - self.seg_info["start_s"] >= self.opts.segment_seconds:
                self._close_segment()
                self._open_segment(reader, frame.rgb.shape, t_s, gap_since)
                gap_since = None
            if self.guard.level >= LagGuard.SKIPPING and not self._must_keep():
                self.comp.skip(frame.pts)  # too far behind: represent it by the last kept frame
                continue
            with self.turn:
                self.comp.push(frame.rgb, frame.pts)

    def _must_keep(self) -> bool:
        """Even when skipping, keep the first frame of a file and one every max-gap seconds."""
        if self.comp is None or self.comp.coded == 0:
            return True
        last = self.selector.last_kept_pts
        if last is None or self.comp.last_pts is None:
            return False
        return float((self.comp.last_pts - last) * self.comp.tb) >= self.compress_opts.max_gap

    def _open_segment(self, reader: VideoReader, shape, t_s: float, gap_since: float | None) -> None:
        # Named by stream time from the connection's start, so a backlog drained fast
        # still gives segments their own, ordered names.
        if self.conn_utc is None:
            self.conn_utc, self.conn_t = datetime.now(timezone.utc), t_s
        start = self.conn_utc + timedelta(seconds=max(0.0, t_s - self.conn_t))
        path = segment_path(self.out, start)
        h, w = shape[:2]
        meta = {"source": self.url, "utc_start": start.isoformat(), "ingest": True}
        copts = self.compress_opts
        self.comp = Compressor(path, self.codec, self.selector, w, h, reader.fps, reader.time_base, meta,
                               atomic=True, fsync_interval=self.opts.fsync_interval,
                               intra_period=copts.intra_period, predict=copts.predict,
                               code_dropped=copts.code_dropped and self.guard.level == 0,
                               lookahead=False,  # a live frame is written as soon as it is coded
                               block_px=copts.block_px, scale=copts.scale, motion=copts.motion,
                               conditional=copts.conditional, stabilise=copts.stabilise)
        self.seg_info = {"path": str(path), "start_s": t_s, "utc_start": start.isoformat(),
                         "wall0": time.monotonic()}
        if gap_since is not None:
            self.comp.mark_gap(None, None, f"stream lost at {datetime.fromtimestamp(gap_since, timezone.utc).isoformat()}")

    def _close_segment(self) -> None:
        if self.comp is None:
            return
        comp, self.comp = self.comp, None
        if comp.frames == 0:
            comp.abort()
            return
        s = comp.close(seconds=time.monotonic() - self.seg_info["wall0"])
        for k, v in (("frames_in", s.frames), ("selected", s.selected), ("coded", s.coded), ("bytes", s.bytes),
                     ("stream_s", s.duration_s)):
            self.done[k] += v
        classes = {}
        active = False
        for seg in comp.segments:
            active |= seg.get("active", False)
            for k, v in seg.get("classes", {}).items():
                classes[k] = max(classes.get(k, 0), v)
        line = {**({"camera": self.name} if self.name != self.url else {}), "segment": self.seg_info["path"], "start": self.seg_info["utc_start"],
                "end": datetime.now(timezone.utc).isoformat(), "frames_in": s.frames, "coded": s.coded, "selected": s.selected,
                "kbps": round(s.kbps, 2), "bytes": s.bytes, "lag_max_s": round(self.max_lag, 3),
                "lag_s": round(self.lag, 3), "active": active, "detections": classes}
        self.max_lag = self.lag
        with open(self.out / INDEX, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.emit(line)
        enforce_retention(self.out, self.opts.keep_days, self.opts.max_disk)


# -- retention and status ---------------------------------------------------------------
def _segments(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*/*/*.vsv"))


def _activity(out: Path) -> dict[str, bool]:
    act = {}
    idx = out / INDEX
    if idx.exists():
        for line in idx.read_text().splitlines():
            try:
                d = json.loads(line)
                act[d["segment"]] = bool(d.get("active"))
            except (ValueError, KeyError):
                continue
    return act


def enforce_retention(out: Path, keep_days: float | None, max_disk: int | None) -> list[Path]:
    """Delete finished segments past the age limit, then over the disk budget: idle first, oldest first.

    The live ``.part`` file is never touched.
    """
    removed = []
    segs = _segments(out)
    if keep_days is not None:
        cutoff = time.time() - keep_days * 86400
        for p in list(segs):
            if p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
                removed.append(p)
                segs.remove(p)
    if max_disk is not None:
        used = sum(p.stat().st_size for p in out.rglob("*.vsv*"))
        act = _activity(out)
        order = sorted(segs, key=lambda p: (act.get(str(p), True), str(p)))  # idle (False) first, then by name=time
        for p in order:
            if used <= max_disk:
                break
            used -= p.stat().st_size
            p.unlink(missing_ok=True)
            removed.append(p)
    for p in removed:
        log.info("retention: deleted %s", p)
    return removed


def status(out_dir: str | os.PathLike) -> dict:
    """What is on disk in an ingest folder; for a folder of cameras (one folder each), every camera's."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"not an ingest folder: {out_dir}")
    cameras = sorted(p for p in out.iterdir() if p.is_dir() and (p / INDEX).exists())
    if cameras and not (out / INDEX).exists():
        return {"folder": str(out), "cameras": {p.name: _status(p) for p in cameras}}
    return _status(out)


def _status(out: Path) -> dict:
    from ..pipeline import info

    files = _segments(out) + sorted(out.glob("*/*/.*.vsv.part"))
    total = covered = 0.0
    gaps, events, frames, coded = 0, {}, 0, 0
    interrupted = 0
    first = last = None
    for p in files:
        try:
            d = info(p)
        except Exception as exc:  # one bad file must not hide the rest
            log.warning("%s: %s", p, exc)
            continue
        total += d["bytes"]
        covered += d["duration_s"]
        gaps += len(d["gaps"])
        frames += d["frames"]
        coded += d["coded"]
        interrupted += d["integrity"] != "complete"
        for s in d["segments"]:
            for k, v in s.get("classes", {}).items():
                events[k] = events.get(k, 0) + 1
        start = d["header"]["metadata"].get("utc_start")
        if start:
            first = start if first is None else min(first, start)
            last = start if last is None else max(last, start)
    return {"folder": str(out), "segments": len(files), "unfinished": interrupted, "bytes": int(total),
            "hours_covered": round(covered / 3600, 4), "frames": frames, "coded": coded, "gaps": gaps,
            "segments_with": events, "first_segment_utc": first, "last_segment_utc": last}
