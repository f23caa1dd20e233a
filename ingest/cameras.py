"""Many cameras in one ingester: one codec, one conditional model and one detector for all of them.

``vidsieve ingest --config cameras.toml`` (or ``--source NAME=URL``, repeated) runs one
:class:`~.live.Ingester` per camera, each in its own thread, each writing its own folder
(``OUT/NAME/YYYY-MM-DD/HH/MM.SS.vsv``) with its own segments, retention, policy and target rate. They
share what is only read: the codec's weights, the conditional model, a stateless detector. Each camera
keeps its own lag guard, so a busy camera that falls behind keeps fewer frames, then lowers its quality,
before a quiet camera notices; a camera that drops reconnects alone. SIGINT/SIGTERM finish every
camera's file. ``--status-port`` serves what each camera is doing on localhost, as JSON and Prometheus
text.

A config file::

    out_dir = "/var/lib/vidsieve"      # each camera writes OUT_DIR/NAME unless it names its own out_dir
    max_disk = "20G"                   # shared: each camera gets an equal share unless it sets its own
    keep_days = 14
    segment_seconds = 60
    detector = "auto"                  # one detector for every camera
    status_port = 9120                 # off unless given

    [cameras.door]
    url = "rtsp://10.0.0.5/stream1"
    policy = "evidence"

    [cameras.yard]
    url = "rtsp://10.0.0.6/stream1"
    target_kbps = 60
    keep_days = 3
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from ..errors import UsageError, VidsieveError
from .live import Ingester, IngestOptions

log = logging.getLogger(__name__)

#: Keys a camera's table may set: where and how it records.
CAMERA_KEYS = {"url", "out_dir", "segment_seconds", "keep_days", "max_disk", "policy", "target_kbps", "quality",
               "max_gap", "detect_every", "classes", "keep_all", "scale"}
#: Keys the file's top level may set: every camera's defaults, and what they share.
TOP_KEYS = {"out_dir", "segment_seconds", "keep_days", "max_disk", "policy", "target_kbps", "quality", "max_gap",
            "detect_every", "classes", "detector", "model", "precision", "status_port", "fsync_interval",
            "max_reconnects", "scale", "cameras"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Camera:
    name: str
    url: str
    out_dir: Path
    opts: IngestOptions


def parse_sources(pairs: list[str]) -> list[tuple[str, str]]:
    """``NAME=URL`` pairs, checked: names are folder names, each used once."""
    out = []
    for p in pairs:
        name, sep, url = p.partition("=")
        if not sep or not url:
            raise UsageError(f"--source {p!r}: expected NAME=URL")
        out.append((name, url))
    _check_names([n for n, _ in out], "--source")
    return out


def _check_names(names: list[str], where: str) -> None:
    for n in names:
        if not NAME.match(n):
            raise UsageError(f"{where}: camera name {n!r} must be letters, digits, '_', '-' or '.' (a folder name)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"{where}: camera {dup[0]!r} is named twice")


def _size(v, where: str, key: str) -> int:
    from ..cli.args import size

    try:
        return size(str(v))
    except Exception:
        raise UsageError(f"{where}: {key} {v!r} is not a size such as 500M or 20G") from None


def _number(v, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise UsageError(f"{where}: {key} must be a number above 0, not {v!r}")
    return float(v)


def _scale(v, where: str, key: str) -> float:
    from ..codec import SCALE_MIN

    if isinstance(v, bool) or not isinstance(v, (int, float)) or not SCALE_MIN <= v <= 1:
        raise UsageError(f"{where}: {key} must be a number from {SCALE_MIN:g} to 1, not {v!r}")
    return float(v)


def _count(v, where: str, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise UsageError(f"{where}: {key} must be a whole number, not {v!r}")
    return v


def _flag(v, where: str, key: str) -> bool:
    if not isinstance(v, bool):
        raise UsageError(f"{where}: {key} must be true or false")
    return v


def _policy(v, where: str, key: str) -> str:
    from ..rate import PRESETS

    if v not in PRESETS:
        raise UsageError(f"{where}: {key} {v!r}; choose from {', '.join(PRESETS)}")
    return v


def _names(v, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise UsageError(f"{where}: {key} must be a list of names")
    return tuple(v)


def _text(v, where: str, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise UsageError(f"{where}: {key} must be a string")
    return v


#: Settings of the recording (IngestOptions) and of the coding (CompressOptions), with their checks.
INGEST_SETTINGS = {"segment_seconds": _number, "keep_days": _number, "max_disk": _size, "fsync_interval": _number,
                   "max_reconnects": _count}
COMPRESS_SETTINGS = {"policy": _policy, "target_kbps": _number, "quality": _number, "max_gap": _number,
                     "detect_every": _count, "keep_all": _flag, "classes": _names, "detector": _text,
                     "model": _text, "precision": _text, "scale": _scale}


def apply_settings(base: IngestOptions, table: dict, where: str) -> IngestOptions:
    """``base`` with a config table's recording settings applied (checked, one-line errors)."""
    ingest = {k: INGEST_SETTINGS[k](v, where, k) for k, v in table.items() if k in INGEST_SETTINGS}
    compress = {k: COMPRESS_SETTINGS[k](v, where, k) for k, v in table.items() if k in COMPRESS_SETTINGS}
    return replace(base, **ingest, compress=replace(base.compress, **compress))


def load_config(path: str, base: IngestOptions, out_dir: str | None) -> tuple[list[Camera], int | None]:
    """The cameras of a TOML config file (and its status port), on top of the command line's options."""
    import tomllib

    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    cams = doc.get("cameras")
    if not isinstance(cams, dict) or not cams or not all(isinstance(t, dict) for t in cams.values()):
        raise UsageError(f"{path}: no cameras (add a [cameras.NAME] table with a url for each)")
    _check_names(list(cams), path)
    top = {k: v for k, v in doc.items() if k not in ("cameras", "out_dir", "status_port")}
    opts = apply_settings(base, top, path)
    root = out_dir or doc.get("out_dir")
    if not root:
        raise UsageError(f"{path}: no out_dir (set it in the file or pass --out-dir)")
    port = doc.get("status_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise UsageError(f"{path}: status_port must be a port number")
    shared_disk = opts.max_disk
    cameras = []
    for name, table in cams.items():
        where = f"{path}: camera {name!r}"
        unknown = sorted(set(table) - CAMERA_KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(CAMERA_KEYS))})")
        if not isinstance(table.get("url"), str) or not table["url"]:
            raise UsageError(f"{where}: no url")
        cam_opts = apply_settings(opts, {k: v for k, v in table.items() if k not in ("url", "out_dir")}, where)
        if "max_disk" not in table and shared_disk is not None:
            cam_opts = replace(cam_opts, max_disk=shared_disk // len(cams))
        cameras.append(Camera(name, table["url"], Path(table.get("out_dir") or Path(root) / name), cam_opts))
    return cameras, port


def cameras_from_sources(pairs: list[tuple[str, str]], base: IngestOptions, out_dir: str) -> list[Camera]:
    """``--source NAME=URL`` cameras: each writes OUT_DIR/NAME, with an equal share of ``--max-disk``."""
    share = None if base.max_disk is None else base.max_disk // len(pairs)
    return [Camera(n, u, Path(out_dir) / n, replace(base, max_disk=share)) for n, u in pairs]


class Shared:
    """What every camera reads: the codec (its conditional model comes with it, loaded once by the
    registry) and a stateless detector. A motion detector keeps per-camera state: each camera's selector
    makes its own."""

    def __init__(self, cameras: list[Camera], log_fn: Callable[[str], None] | None = None):
        from ..codec.registry import load_codec

        models = {(c.opts.compress.model, c.opts.compress.precision) for c in cameras}
        self.codecs = {m: load_codec(m[0], precision=m[1]) for m in models}
        self.detectors: dict[tuple, object] = {}
        for c in cameras:
            co = c.opts.compress
            if co.keep_all or co.detector == "motion" or co.detector_format == "motion":
                continue
            key = self._key(c)
            if key not in self.detectors:
                from ..detection.base import DEFAULT_CLASSES
                from ..detection.registry import load_detector

                self.detectors[key] = load_detector(co.detector, co.detector_format, co.detect_size,
                                                    tuple(co.classes) if co.classes else DEFAULT_CLASSES, log_fn)

    @staticmethod
    def _key(c: Camera) -> tuple:
        co = c.opts.compress
        return co.detector, co.detector_format, co.detect_size, tuple(co.classes or ())

    def codec(self, c: Camera):
        return self.codecs[(c.opts.compress.model, c.opts.compress.precision)]

    def detector(self, c: Camera):
        """The loaded detector ``c`` shares, or None when its selector makes its own (motion)."""
        det = self.detectors.get(self._key(c))
        return None if det is None or det.name == "motion" else det

    def options(self, c: Camera) -> IngestOptions:
        """``c``'s options, its detector named as what was loaded for it: a camera whose detector fell
        back to motion boxes asks for them at once, without trying (and logging) again per connection."""
        det = self.detectors.get(self._key(c))
        if det is not None and det.name == "motion":
            return replace(c.opts, compress=replace(c.opts.compress, detector="motion", detector_format=None))
        return c.opts


class Turns:
    """A lock handed over first come, first served: a thread that releases it and asks again at once
    queues behind those already waiting (a plain lock lets it barge in ahead of them)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: deque[threading.Event] = deque()
        self._busy = False

    def __enter__(self):
        with self._lock:
            if not self._busy:
                self._busy = True
                return self
            ev = threading.Event()
            self._queue.append(ev)
        ev.wait()  # the holder hands the turn over: still busy, now ours
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            if self._queue:
                self._queue.popleft().set()
            else:
                self._busy = False


class MultiIngester:
    """Runs every camera's :class:`~.live.Ingester` in its own thread until each source ends, a signal
    comes or ``run_seconds`` pass; a camera that fails stops alone (its error is logged and counted)."""

    def __init__(self, cameras: list[Camera], status_port: int | None = None,
                 emit: Callable[[dict], None] | None = None, log_fn: Callable[[str], None] | None = None):
        if not cameras:
            raise UsageError("no cameras to ingest")
        self.cameras = cameras
        self.shared = Shared(cameras, log_fn)
        lock = threading.Lock()
        out = emit or (lambda d: print(json.dumps(d), flush=True))

        def locked(d: dict) -> None:
            with lock:  # one JSON line at a time from every camera's thread
                out(d)

        # One frame coded at a time: the codec's arithmetic already uses every core, and turns handed
        # over in arrival order share them frame by frame.
        turn = Turns()
        self.ingesters = [Ingester(c.url, c.out_dir, self.shared.options(c), emit=locked, codec=self.shared.codec(c),
                                   detector=self.shared.detector(c), name=c.name, turn=turn) for c in cameras]
        self.errors: dict[str, str] = {}
        self.status_port = status_port
        self.server: ThreadingHTTPServer | None = None

    def status(self) -> dict:
        return {"cameras": [i.snapshot() for i in self.ingesters], "errors": dict(self.errors),
                "time": time.time()}

    def stop(self) -> None:
        for i in self.ingesters:
            i.stop = True

    def _on_signal(self, signum, frame) -> None:
        log.info("signal %d: finishing every camera's segment", signum)
        self.stop()

    def _run_one(self, ing: Ingester) -> None:
        try:
            ing.run(signals=False)
        except VidsieveError as exc:
            self.errors[ing.name] = str(exc)
            log.error("camera %s stopped: %s", ing.name, exc)
        except Exception as exc:  # one camera's fault must not stop the others
            self.errors[ing.name] = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s stopped", ing.name)

    def run(self) -> int:
        if self.status_port:
            self.server = serve_status(self.status, self.status_port)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        threads = [threading.Thread(target=self._run_one, args=(i,), name=f"camera {i.name}", daemon=True)
                   for i in self.ingesters]
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
        finally:
            self.stop()
            for t in threads:
                t.join()
            for s, h in old.items():
                signal.signal(s, h)
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
        return 0 if not self.errors else 1


# -- the status endpoint --------------------------------------------------------------------------------------

#: Per-camera gauges the Prometheus text carries: (field, metric, help).
METRICS = (
    ("frames_in", "vidsieve_frames_in_total", "Frames received from the camera."),
    ("selected", "vidsieve_frames_selected_total", "Frames selection kept."),
    ("coded", "vidsieve_frames_coded_total", "Frames coded (kept, or predicted from a kept one)."),
    ("kept_share", "vidsieve_kept_share", "Share of received frames selection kept."),
    ("kbps", "vidsieve_kbps", "Mean rate written, kilobits per second of stream."),
    ("lag_s", "vidsieve_lag_seconds", "How far the ingester runs behind the stream now."),
    ("lag_max_s", "vidsieve_lag_max_seconds", "The largest lag in the current segment."),
    ("degradation", "vidsieve_degradation_level", "Lag guard level: 0 normal .. 4 skipping frames."),
    ("reconnects", "vidsieve_reconnects_total", "Times the camera's stream was lost and reopened."),
    ("disk_used_bytes", "vidsieve_disk_used_bytes", "Bytes of segments on disk."),
    ("disk_left_bytes", "vidsieve_disk_left_bytes", "Bytes left in the camera's disk budget (or on its disk)."),
)


def prometheus(status: dict) -> str:
    lines = []
    for key, metric, text in METRICS:
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {'counter' if metric.endswith('_total') else 'gauge'}"]
        for cam in status["cameras"]:
            v = cam.get(key)
            if v is not None:
                lines.append(f'{metric}{{camera="{cam["camera"]}"}} {v}')
    lines += ["# HELP vidsieve_camera_up Whether the camera's stream is being read (1) or not (0).",
              "# TYPE vidsieve_camera_up gauge"]
    lines += [f'vidsieve_camera_up{{camera="{c["camera"]}"}} {int(c["state"] == "running")}' for c in status["cameras"]]
    return "\n".join(lines) + "\n"


def serve_status(get: Callable[[], dict], port: int) -> ThreadingHTTPServer:
    """``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text) on 127.0.0.1:``port``, in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] in ("/", "/status"):
                body, kind = json.dumps(get(), indent=1).encode(), "application/json"
            elif self.path.split("?")[0] == "/metrics":
                body, kind = prometheus(get()).encode(), "text/plain; version=0.0.4"
            else:
                self.send_error(404, "try /status or /metrics")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # requests are not worth a log line each
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise UsageError(f"--status-port {port}: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="status endpoint", daemon=True).start()
    return server
