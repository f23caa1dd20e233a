"""How fast vidsieve runs on this machine: a frame, a stream, a batch, a training step.

Usage::

    python tools/speed.py frame --help
    python tools/speed.py stream --help
    python tools/speed.py batch --help
    python tools/speed.py train-step --help
    python tools/speed.py detector-sizes --help

Each command's help says what it measures and where it writes; docs/RESULTS.md and
docs/TRAINING.md quote the commands that made their numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import _tool
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.codec.models import LAMBDAS, GainedMeanScaleHyperprior, widths
from vidsieve.datasets.images import CropSampler, load_training_arrays
from vidsieve.files import write_json
from vidsieve.training.rd import rd_loss
from vidsieve.training.widen import widen_latent

# The ``frame`` command.
DOC_FRAME = """Codec and detection speed on this machine: one 720p frame, encode + decode, and selection per frame.

    python tools/speed.py frame --image ../shared/data/images/kodak/kodim23.png --out docs/results/speed.json
"""




def add_frame(sub) -> None:
    ap = _tool.command(sub, "frame", DOC_FRAME, out="docs/results/speed.json")
    ap.add_argument("--image", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--yolox", default=None, help="a YOLOX .onnx to time as well")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name or weights file")
    ap.add_argument("--codec-only", action="store_true", help="skip the selection and detector timings")
    ap.set_defaults(body=frame_speed)


def frame_speed(a) -> None:
    from fractions import Fraction

    from vidsieve.codec.registry import load_codec
    from vidsieve.datasets.images import load_rgb
    from vidsieve.detection.motion import MotionDetector
    from vidsieve.rate import RateController, RatePolicy
    from vidsieve.selection.detect import DetectionSelector

    frame = cv2.resize(load_rgb(a.image), (1280, 720), interpolation=cv2.INTER_AREA)
    codec = load_codec(a.model)
    res = {"model": a.model, "weights_sha256": codec.weights_sha256[:12],
           "cpu": _tool.cpu_name(), "cores": len(os.sched_getaffinity(0)),
           "torch_threads": torch.get_num_threads(), "frame": "1280x720", "codec": {}}
    for q in (1, 4, 8):
        codec.encode(frame, q)  # warm-up
        enc, dec = [], []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            data = codec.encode(frame, q)
            t1 = time.perf_counter()
            codec.decode(data)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
        res["codec"][f"quality={q}"] = {"encode_s": round(float(np.median(enc)), 3),
                                        "decode_s": round(float(np.median(dec)), 3),
                                        "total_s": round(float(np.median(enc) + np.median(dec)), 3),
                                        "bytes": len(data)}
    if a.codec_only:
        return _write_result(res, a.out)
    sel = DetectionSelector(MotionDetector(), RateController(RatePolicy()), Fraction(1, 10))
    rng = np.random.default_rng(0)
    frames = [np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
              for _ in range(20)]
    for i, f in enumerate(frames[:3]):
        sel.decide(f, i)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        sel.decide(f, i + 3)
    res["selection_motion_ms_per_frame"] = round(1000 * (time.perf_counter() - t0) / len(frames), 1)
    # yolo11n.yaml builds the same network as yolo11n.pt with random weights: same cost, no download.
    from vidsieve.detection.registry import load_detector

    dets = {"ultralytics yolo11n (320 px)": "yolo11n.yaml"}
    if a.yolox:
        dets["yolox-nano onnx (416 px)"] = a.yolox
    for name, spec in dets.items():
        try:
            d = load_detector(spec)
        except Exception as exc:
            res[f"detect_ms_{name}"] = f"unavailable: {exc}"
            continue
        d.detect(frame)
        t0 = time.perf_counter()
        for f in frames[:10]:
            d.detect(f)
        res[f"detect_ms_{name}"] = round(1000 * (time.perf_counter() - t0) / 10, 1)
    return _write_result(res, a.out)


def _write_result(res: dict, out: str) -> dict:
    write_json(out, res)
    print(json.dumps(res))
    return res


# The ``stream`` command.
DOC_STREAM = """Frames a second of ``vidsieve compress`` and ``decompress`` on whole clips, with this machine's cores.

For each clip: compress its first ``--frames`` frames (default settings: selection and
predicted frames; ``--keep-all`` codes every frame), then decompress the file to FFV1;
report frames a second of each, the file's rate and PSNR, and what the stream coder did.

``--compare-whole`` times each run ``--reps`` times in each of two ways, in turns: predicted
frames' exact entropy parameters in windows around the blocks that use them (the default)
and for the whole frame (:func:`vidsieve.codec.fixed_point.exact_in_blocks`; the streams are
the same), and reports the medians of both side by side.
"""


def stream_run(clip: str, frames: int, keep_all: bool, model: str) -> dict:
    from vidsieve.pipeline import CompressOptions, compress, decompress, info

    opts = CompressOptions(keep_all=keep_all, max_frames=frames, detector="motion", model=model)
    with tempfile.TemporaryDirectory() as d:
        vsv = Path(d) / "c.vsv"
        t0 = time.perf_counter()
        s = compress(clip, vsv, opts, progress=False)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decompress(vsv, Path(d) / "c.mkv", lossless=True, progress=False)
        dec = time.perf_counter() - t0
        i = info(vsv)
    return {"clip": Path(clip).name, "keep_all": keep_all, "frames": s.frames, "coded": s.coded, "selected": s.selected,
            "encode_fps": round(s.frames / enc, 2), "decode_fps": round(s.frames / dec, 2),
            "kbps": round(s.kbps, 2), "psnr_coded": round(s.psnr_coded, 3), "gop": i["gop"]}


def add_stream(sub) -> None:
    ap = _tool.command(sub, "stream", DOC_STREAM, out="docs/results/stream_speed.json")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name or weights file (default: %(default)s)")
    ap.add_argument("--compare-whole", action="store_true",
                    help="time windows against whole-frame entropy parameters, in turns (see above)")
    ap.add_argument("--reps", type=int, default=2, help="turns of each with --compare-whole (default: 2)")
    ap.set_defaults(body=stream_speed)


def compare_whole(clip: str, frames: int, keep_all: bool, model: str, reps: int) -> dict:
    """Medians of ``reps`` turns of :func:`stream_run` with entropy parameters in windows and for whole frames."""
    import statistics

    from vidsieve.codec import fixed_point

    share = fixed_point.WINDOWS_MAX_SHARE
    runs: dict[str, list[dict]] = {"windows": [], "whole": []}
    try:
        for _ in range(reps):
            for mode in runs:
                fixed_point.WINDOWS_MAX_SHARE = share if mode == "windows" else -1.0
                runs[mode].append(stream_run(clip, frames, keep_all, model))
    finally:
        fixed_point.WINDOWS_MAX_SHARE = share
    out = {k: v for k, v in runs["windows"][0].items() if k not in ("encode_fps", "decode_fps")}
    for mode, rs in runs.items():
        for k in ("encode_fps", "decode_fps"):
            out[f"{k}_{mode}"] = round(statistics.median(r[k] for r in rs), 2)
    out["same_rate_and_psnr"] = len({(r["kbps"], r["psnr_coded"]) for rs in runs.values() for r in rs}) == 1
    return out


def stream_speed(a) -> None:
    from vidsieve.codec.frame_codec import set_threads

    if a.reps < 1:
        raise ValueError("--reps must be at least 1")
    from vidsieve.codec.registry import load_codec

    res = {"cpu": _tool.cpu_name(), "cores": len(os.sched_getaffinity(0)), "threads": set_threads(),
           "model": a.model, "weights_sha256": load_codec(a.model).weights_sha256[:12],
           "date": time.strftime("%Y-%m-%d"), "runs": []}
    for clip in a.clips:
        for keep_all in (False, True):
            res["runs"].append(compare_whole(clip, a.frames, keep_all, a.model, a.reps) if a.compare_whole
                               else stream_run(clip, a.frames, keep_all, a.model))
            print(res["runs"][-1], flush=True)
    write_json(a.out, res)


# The ``batch`` command.
DOC_BATCH = """Throughput of ``vidsieve compress --out-dir`` on the local executor and on Ray, by number of workers.

Cuts ``--pieces`` clips of ``--frames`` frames each from the given video (lossless FFV1, so
every piece is real footage and costs the same to read), then compresses the batch with each
executor and worker count in turn, into fresh folders: local processes (1..``--workers``) and
a Ray instance started for the run with as many CPUs. Reports wall time, frames a second and
the time Ray adds (its start-up, and per task against local at the same worker count), and
checks that the files Ray writes are byte for byte the local ones.
"""


def cut_pieces(video: str, out: Path, pieces: int, frames: int) -> list[Path]:
    """``pieces`` consecutive stretches of ``frames`` frames of ``video``, each its own FFV1 file."""
    import av
    from vidsieve.datasets.video import VideoReader

    paths, writer, st, n = [], None, None, 0
    with VideoReader(video) as r:
        for f in r:
            if writer is None:
                if len(paths) == pieces:
                    break
                paths.append(out / f"piece{len(paths):02d}.mkv")
                writer = av.open(str(paths[-1]), "w")
                st = writer.add_stream("ffv1", rate=Fraction(r.fps).limit_denominator(1001))
                st.height, st.width = f.rgb.shape[:2]
                st.pix_fmt = "bgr0"
            for p in st.encode(av.VideoFrame.from_ndarray(f.rgb, format="rgb24")):
                writer.mux(p)
            n += 1
            if n % frames == 0:
                for p in st.encode(None):
                    writer.mux(p)
                writer.close()
                writer = None
    if writer is not None or len(paths) < pieces:
        raise ValueError(f"{video} has fewer than {pieces * frames} frames")
    return paths


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.vsv")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def one_run(inputs: list[Path], out: Path, executor: str, workers: int) -> dict:
    from vidsieve.executor import make_executor
    from vidsieve.pipeline import CompressOptions
    from vidsieve.pipeline.batch import compress_batch

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ex = make_executor(executor, jobs=workers, ray_cpus=workers)
    s = compress_batch([str(p) for p in inputs], out, CompressOptions(detector="motion"), ex, progress=False)
    wall = time.perf_counter() - t0
    if s.exit_code:
        raise RuntimeError(f"batch failed: {s.to_json()}")
    frames = sum(it.frames for it in s.items)
    task_s = sum(it.seconds for it in s.items)
    return {"executor": executor, "workers": workers, "wall_s": round(wall, 2), "frames": frames,
            "fps": round(frames / wall, 2), "task_seconds": round(task_s, 2),
            "bytes_out": sum(it.bytes_out for it in s.items), "sha256": digest(out)}


DOC_DETECTOR_SIZES = """How fast a YOLO11 detector of each width and input size runs here: the choice of the shipped one.

Builds each architecture (random weights: speed does not depend on them), exports it to ONNX and runs
it on onnxruntime with --threads threads, pre- and post-processing included (what vidsieve runs).

    python tools/speed.py detector-sizes --out docs/results/detector_sizes.json
"""


def detector_sizes(a) -> dict:
    import tempfile

    from vidsieve.datasets.synthetic import background
    from vidsieve.files import write_json

    rgb = background(640, 360, 1).astype(np.uint8)
    rows = []
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ultralytics writes a yaml-built model's export to the working folder
        try:
            rows = _detector_rows(a, rgb, Path(tmp))
        finally:
            os.chdir(here)
    doc = {"rows": rows, "threads": a.threads, "frame": "640x360", "machine": _tool.cpu_name()}
    if a.out:
        write_json(a.out, doc)
    return doc


def _detector_rows(a, rgb, tmp: Path) -> list[dict]:
    from ultralytics import YOLO
    from vidsieve.detection.yolo_onnx import YoloOnnxDetector
    from vidsieve.training.detector import STUDENT_CLASSES, frames_per_second, student_yaml

    rows = []
    for depth, width in ((0.33, 0.125), (0.33, 0.1875), (0.5, 0.25)):
        y = tmp / f"d{depth}-w{width}.yaml"
        y.write_text(student_yaml(width, depth, len(STUDENT_CLASSES)))
        model = YOLO(str(y), task="detect")
        params = sum(p.numel() for p in model.model.parameters())
        for size in a.sizes:
            onnx = model.export(format="onnx", imgsz=size, simplify=False, dynamic=False)
            det = YoloOnnxDetector(onnx, threads=a.threads, names=dict(enumerate(STUDENT_CLASSES)))
            fps = frames_per_second(det, rgb)
            rows.append({"depth": depth, "width": width, "params": params, "imgsz": size, "fps": round(fps, 1),
                         "onnx_bytes": Path(onnx).stat().st_size})
            print(f"depth {depth} width {width} ({params / 1e6:.2f} M) at {size}: {fps:.1f} fps")
    return rows


def add_detector_sizes(sub) -> None:
    ap = _tool.command(sub, "detector-sizes", DOC_DETECTOR_SIZES, out=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 320, 416], help="input sizes (default 256 320 416)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    ap.set_defaults(body=detector_sizes)


def add_batch(sub) -> None:
    ap = _tool.command(sub, "batch", DOC_BATCH, out="docs/results/batch_throughput.json")
    ap.add_argument("video", help="footage to cut the pieces from")
    ap.add_argument("--pieces", type=int, default=8)
    ap.add_argument("--frames", type=int, default=50, help="frames per piece")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.set_defaults(body=batch_speed)


def _ray_start_s() -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.get(ray.remote(lambda: 0).remote())
    up = time.perf_counter() - t0
    ray.shutdown()
    return round(up, 2)


def batch_speed(a) -> None:
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1764547200")  # same bytes from every run, to compare them
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in").mkdir()
        inputs = cut_pieces(a.video, d / "in", a.pieces, a.frames)
        res = {"cpu": _tool.cpu_name(), "cores": len(os.sched_getaffinity(0)), "video": Path(a.video).name,
               "pieces": a.pieces, "frames_per_piece": a.frames, "ray_start_s": _ray_start_s(), "runs": []}
        for workers in range(1, a.workers + 1):
            for executor in ("local", "ray"):
                r = one_run(inputs, d / f"{executor}{workers}", executor, workers)
                res["runs"].append(r)
                print({k: v for k, v in r.items() if k != "sha256"}, flush=True)
        res["same_bytes"] = len({r["sha256"] for r in res["runs"]}) == 1
        for w in range(1, a.workers + 1):
            loc, ray = (next(r for r in res["runs"] if r["workers"] == w and r["executor"] == e)
                        for e in ("local", "ray"))
            res[f"ray_overhead_s_{w}_workers"] = round(ray["wall_s"] - loc["wall_s"], 2)
    print({k: v for k, v in res.items() if k != "runs"})
    write_json(a.out, res)


# The ``train-step`` command.
DOC_TRAIN_STEP = r"""How fast one training step runs on this machine, and whether a faster form still learns.

    python tools/speed.py train-step ../shared/data/images/train \
        --weights codec/weights/vidsieve-hyperprior.pth

Times one step (batch 8 of 256x256 crops, every quality level once) of the
shipped architecture in four forms: the default layout, channels-last
transforms (what `Trainer` uses on a CPU), the same under torch.compile
(`--compile`), and channels-last with the two big transforms under bfloat16
autocast. Speed alone would pick bfloat16, so the
script also measures the gradient each form computes on the same crops and the
same rate noise, against the float32 one: a faster step is only worth taking
if it points the same way. For scale it prints the agreement between two
float32 gradients that differ only in the rate noise, and between two batches.
Writes ``docs/results/train_step.json``.
"""


class _Autocast(torch.nn.Module):
    """Runs the wrapped transform under bfloat16 autocast and hands float32 on, so the entropy models stay exact."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


def _model(state: dict, form: str) -> GainedMeanScaleHyperprior:
    m = GainedMeanScaleHyperprior.from_state_dict(state)
    if form != "default":
        m.transforms_channels_last()
    if form == "bf16":
        m.g_a, m.g_s = _Autocast(m.g_a), _Autocast(m.g_s)
    if form == "compiled":
        m.g_a.compile()
        m.g_s.compile()
    return m


def _step(m, x, form: str, seed: int):
    """Loss and transform gradient of one step (no update), and its time."""
    if form != "default":
        x = x.contiguous(memory_format=torch.channels_last)
    levels = torch.arange(x.shape[0]) % len(LAMBDAS)
    m.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    t = time.perf_counter()
    loss, _, _ = rd_loss(m(x, levels.float() + 1), x, torch.tensor(LAMBDAS)[levels])
    loss.backward()
    dt = time.perf_counter() - t
    g = torch.cat([p.grad.flatten() for n, p in m.named_parameters()
                   if p.grad is not None and n.startswith(("g_a", "g_s"))])
    return loss.item(), g, dt


def add_train_step(sub) -> None:
    ap = _tool.command(sub, "train-step", DOC_TRAIN_STEP, out="docs/results/train_step.json")
    ap.add_argument("data", nargs="+", help="image folders to cut the crops from")
    ap.add_argument("--weights", required=True, help="trained weights (gradients of a random model say little)")
    ap.add_argument("--M", type=int, nargs="+", default=[96, 192], help="latent widths (wider ones are widened)")
    ap.add_argument("--reps", type=int, default=4)
    ap.set_defaults(body=train_step_speed)


def train_step_speed(a) -> None:
    st = torch.load(a.weights, map_location="cpu", weights_only=True)
    st = st.get("model", st)
    sampler = CropSampler(load_training_arrays(a.data), 256, np.random.default_rng(0), 1.0)
    to_x = lambda b: torch.from_numpy(b).permute(0, 3, 1, 2).float().div(255).contiguous()
    xa, xb = to_x(sampler.batch(8)), to_x(sampler.batch(8))
    cos = lambda u, v: F.cosine_similarity(u, v, 0).item()
    res = {"cpu": _tool.cpu_name(), "cores": len(os.sched_getaffinity(0)),
           "torch_threads": torch.get_num_threads(), "batch": "8 x 256x256", "weights": Path(a.weights).name,
           "widths": {}}
    for M in a.M:
        state = st if widths(st)[1] == M else widen_latent(st, M)
        row = {}
        ref = None
        for form in ("default", "channels_last", "compiled", "bf16"):
            m = _model(state, form)
            t0 = time.perf_counter()
            _step(m, xa, form, 0)  # warm-up: oneDNN picks its kernels on the first call, inductor compiles
            first = time.perf_counter() - t0
            times = [_step(m, xa, form, 0)[2] for _ in range(a.reps)]
            loss, g, _ = _step(m, xa, form, 0)
            if ref is None:
                ref = g
                row["noise_only"] = round(cos(g, _step(m, xa, form, 1)[1]), 3)
                row["other_batch"] = round(cos(g, _step(m, xb, form, 0)[1]), 3)
            row[form] = {"s_per_step": round(float(np.median(times)), 3), "first_step_s": round(first, 1),
                         "loss": round(loss, 4),
                         "grad_cosine_vs_fp32": round(cos(g, ref), 3),
                         "grad_norm_vs_fp32": round((g.norm() / ref.norm()).item(), 3)}
            print(M, form, row[form], flush=True)
        res["widths"][f"N{widths(st)[0]}/M{M}"] = row
        print(M, "fp32 gradient vs other rate noise:", row["noise_only"], "vs other batch:", row["other_batch"])
    write_json(a.out, res, indent=1)
    print(f"wrote {a.out}")


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_frame, add_stream, add_batch, add_train_step, add_detector_sizes], argv)


if __name__ == "__main__":
    raise SystemExit(main())
