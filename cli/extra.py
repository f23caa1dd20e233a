"""Subcommands beyond compress/decompress/info: train, train-detector, bench, bench-image, ingest, soak."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..codec import DEFAULT_MODEL
from ..errors import InputError, UsageError, VidsieveError
from .args import (add_executor_args, add_precision_arg, add_selection_args, duration, executor_from_args,
                   options_from_args, positive, size)

COMMANDS: dict = {}


def add_commands(sub) -> None:
    t = sub.add_parser("train", help="train or fine-tune the variable-rate codec",
                       description="Train the codec on folders of images and videos (frames are sampled from "
                                   "videos), or fine-tune the shipped model on one camera's footage.")
    t.add_argument("--data", nargs="+", metavar="DIR",
                   help="folders (or files) of images/videos (with --resume: where the run's data is now; "
                        "default: the folders it was trained on)")
    t.add_argument("--out", default=None, help="checkpoint path (written every few minutes, atomically); required "
                                              "but with --export-only")
    t.add_argument("--arch", default="vidsieve-hyperprior", choices=["vidsieve-hyperprior"],
                   help="architecture (default: vidsieve-hyperprior)")
    t.add_argument("--N", type=positive(int), default=64, help="transform channels (default 64)")
    t.add_argument("--M", type=positive(int), default=96, help="latent channels (default 96)")
    t.add_argument("--val", nargs="+", default=None, metavar="DIR",
                   help="held-out images/videos for the periodic check (default: the last fifth of each video "
                        "in --data, in time; with no videos, a fixed 6%% of its images)")
    t.add_argument("--max-time", type=duration, default=None,
                   help="stop after this long (e.g. 30m, 2h); without --steps the learning-rate schedule "
                        "is fitted to this time")
    t.add_argument("--steps", type=positive(int), default=None,
                   help="schedule length in steps (default 100000; 2000 when fine-tuning); without it, "
                        "--max-time alone sets the schedule and the run ends with it")
    t.add_argument("--resume", default=None,
                   help="continue a checkpoint exactly (optimisers, schedule, RNG) to the end of its schedule; "
                        "--steps lengthens a step schedule")
    t.add_argument("--restart-schedule", action="store_true",
                   help="with --resume: go on training a run whose schedule is spent, with a new learning-rate "
                        "cycle (warm restart) from --lr (default: the run's) over --max-time or --steps")
    t.add_argument("--finetune", default=None, metavar="WEIGHTS",
                   help="start from these weights (a .pth, or a shipped model's name: vidsieve-hyperprior, "
                        "vidsieve-hyperprior-wide, vidsieve-hyperprior-slim); the held-out check (--val, else "
                        "the last fifth of each video) picks the weights to keep, the starting ones included, so the result is never "
                        "worse there than where it began")
    t.add_argument("--patch", type=positive(int), default=None, help="crop size (default 256; 128 is faster)")
    t.add_argument("--batch", type=positive(int), default=None, help="batch size (default 8)")
    t.add_argument("--lr", type=positive(float), default=None, help="learning rate (default 2e-4; 5e-5 fine-tuning)")
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the transforms: 1.2-1.6x faster steps on a CPU after a minute of "
                        "compiling (needs a C++ compiler); worth it for runs longer than a few minutes")
    t.add_argument("--inter", action="store_true",
                   help="train the conditional entropy model of predicted frames (video only; the intra model "
                        "stays frozen, its latents are cached: minutes on a CPU); with --finetune, start from "
                        "shipped conditional weights (a name such as vidsieve-inter-wide, or a .pth)")
    t.add_argument("--joint", action="store_true",
                   help="fine-tune the transforms together with the conditional model on pairs of video frames "
                        "(the earlier coded alone, the later predicted from it): a GPU's work, minutes there "
                        "(scripts/train_gpu_lease.sh); starts from --intra and the conditional model shipped for "
                        "it, or --finetune CONDITIONAL; --export writes both")
    t.add_argument("--context", action="store_true",
                   help="with --inter: the two-pass model, whose second checkerboard pass sees the first's decoded "
                        "values (payload version 8); --finetune may name a model without it to start from")
    t.add_argument("--frames", type=positive(int), default=None, metavar="N",
                   help="with --inter: consecutive frames cached per video (default 240)")
    t.add_argument("--intra", default=None, metavar="MODEL",
                   help=f"with --inter or --joint: the intra model (default: {DEFAULT_MODEL})")
    t.add_argument("--export", default=None, metavar="DIR",
                   help="when done, write DIR/NAME.pth and DIR/manifest.json for the registry (NAME: "
                        "the shipped model of the same widths, e.g. vidsieve-hyperprior-wide for N 64 / M 192, "
                        "else vidsieve-hyperprior)")
    t.add_argument("--export-name", default=None, metavar="NAME",
                   help="with --inter --export: the registry name (default: the intra model's, vidsieve-hyperprior "
                        "made vidsieve-inter, with -ctx for a model with --context)")
    t.add_argument("--export-only", action="store_true",
                   help="with --inter --resume CKPT --export DIR: export the checkpoint's weights without training "
                        "on (nor reading the videos again)")
    t.add_argument("--export-first-pass", action="store_true",
                   help="with --inter --export and a model with --context: export its first pass alone, as a "
                        "model without context (what the context adds, against the same training)")
    COMMANDS["train"] = cmd_train

    d = sub.add_parser("train-detector", help="distil a detector into a small YOLO student (the shipped detector)",
                       description="Label frames sampled from folders of footage and photographs with a teacher "
                                   "detector, train a small ultralytics YOLO11 on its boxes from scratch (on "
                                   "frames degraded the way fixed cameras degrade them), and export it to ONNX "
                                   "(run by onnxruntime, no torch at inference) and .pt. A run lives in one "
                                   "folder, checkpoints every epoch and goes on with --resume.")
    d.add_argument("--teacher", default=None,
                   help="the teacher: a YOLOX .onnx (e.g. ../shared/models/yolox_nano.onnx) or an ultralytics .pt")
    d.add_argument("--data", nargs="+", metavar="PATH", help="folders or files of videos and images to train on")
    d.add_argument("--val", nargs="+", metavar="PATH",
                   help="footage kept out of training: measured on every epoch and at export (other scenes)")
    d.add_argument("--out", default=None, metavar="DIR", help="the run's folder (new)")
    d.add_argument("--resume", default=None, metavar="DIR", help="go on with the run in DIR")
    d.add_argument("--init", default=None, metavar="PT",
                   help="a new run starts from these weights (e.g. detection/weights/vidsieve-student.pt) "
                        "instead of from scratch")
    d.add_argument("--max-time", type=duration, default=None,
                   help="stop after the epoch that passes this long (e.g. 2h50m); --resume goes on")
    d.add_argument("--epochs", type=positive(int), default=120, help="schedule length (default 120)")
    d.add_argument("--imgsz", type=positive(int), default=320, help="student input size (default 320)")
    d.add_argument("--width", type=positive(float), default=0.1875,
                   help="width multiple of YOLO11 (default 0.1875; yolo11n is 0.25)")
    d.add_argument("--depth", type=positive(float), default=0.33, help="depth multiple (default 0.33)")
    d.add_argument("--batch", type=positive(int), default=32, help="batch size (default 32)")
    d.add_argument("--label-conf", type=positive(float), default=0.35,
                   help="teacher boxes at or above this confidence are labels (default 0.35)")
    d.add_argument("--frames-per-video", type=positive(int), default=160,
                   help="frames sampled from each video, evenly over its length (default 160)")
    d.add_argument("--workers", type=int, default=2, help="data loader workers (default 2; on a CPU, none)")
    d.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    d.add_argument("--export", default=None, metavar="DIR",
                   help="when done, write DIR/vidsieve-student.onnx and .pt with their manifest entry, "
                        "measured against the teacher on the --val footage")
    d.add_argument("--export-only", action="store_true",
                   help="with --resume and --export: export the run's newest weights without training on")
    COMMANDS["train-detector"] = cmd_train_detector

    b = sub.add_parser("bench", help="rate-distortion/speed/detection benchmark against x265, x264, JPEG",
                       description="Encode clips with vidsieve and classical codecs over a sweep of settings; "
                                   "write results.json, results.csv, plots and report.md with BD-rates.")
    b.add_argument("videos", nargs="+")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--codecs", default=None,
                   help="comma-separated (default: all but webp and the zoo): vidsieve,vidsieve-noroi,vidsieve-keepall,"
                        "vidsieve-intra,x265,x265-roi (x265 given --detector's boxes as QP offsets),x265-lowdelay,x264,"
                        "x264-lowdelay,jpeg,webp,svtav1,ffv1-lossless (the sanity row: detection survival must read 1),"
                        "and CompressAI zoo models (bmshj2018-hyperprior, ...) where their weights are downloaded")
    b.add_argument("--frames", type=positive(int), default=None, help="use only the first N frames of each clip")
    b.add_argument("--points", type=positive(int), default=5, help="rate points per codec (default 5)")
    b.add_argument("--jobs", type=positive(int), default=1, help="points measured in parallel processes")
    b.add_argument("--reference-detector", default=None,
                   help="detector for recall and ROI-PSNR (e.g. yolo11n.pt or a YOLOX .onnx); none: skipped")
    b.add_argument("--detector", default="auto", help="detector vidsieve itself uses (default: auto)")
    add_executor_args(b, "points measured")
    COMMANDS["bench"] = cmd_bench

    bi = sub.add_parser("bench-image", help="the frame codec on still images (Kodak) vs JPEG, WebP, CompressAI",
                        description="Measure the learned frame codec on a folder of images with real bitstreams, "
                                    "next to JPEG, WebP, cached CompressAI zoo models and published curves.")
    bi.add_argument("folder")
    bi.add_argument("--out", required=True)
    bi.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name or weights .pth (default: {DEFAULT_MODEL})")
    add_precision_arg(bi)
    bi.add_argument("--reference", default=None,
                    help="folder of CompressAI results JSON files (e.g. ../shared/reference/compressai-kodak)")
    bi.add_argument("--limit", type=positive(int), default=None, help="use only the first N images")
    bi.add_argument("--no-zoo", action="store_true", help="skip CompressAI zoo models")
    COMMANDS["bench-image"] = cmd_bench_image

    g = sub.add_parser("ingest", help="record live streams (one camera or many) as rolling .vsv segments",
                       description="Record a live stream (rtsp://, tcp://, udp://, http(s)://, a V4L2 device, or a "
                                   "file read as if live) into DIR/YYYY-MM-DD/HH/MM.SS.vsv, one file per "
                                   "--segment-seconds, keeping up in real time. One JSON line per finished segment. "
                                   "Many cameras in one process: --source NAME=URL (repeated) or --config "
                                   "cameras.toml; they share one codec and one detector, each writes DIR/NAME "
                                   "with its own lag guard, and one that drops reconnects alone.")
    g.add_argument("url", nargs="?", help="stream URL, device or file (one camera)")
    g.add_argument("--source", action="append", default=None, metavar="NAME=URL",
                   help="a camera (repeat for more); its segments go to OUT_DIR/NAME")
    g.add_argument("--config", default=None, metavar="TOML",
                   help="cameras and their settings in a TOML file (see docs/INGEST.md); command-line options "
                        "are its defaults")
    g.add_argument("--out-dir", help="where segments go (with several cameras: one folder per camera inside)")
    g.add_argument("--status", metavar="DIR", help="summarise what is on disk in DIR (every camera's) and exit")
    g.add_argument("--status-port", type=int, default=None, metavar="PORT",
                   help="serve each camera's state on http://127.0.0.1:PORT/status (JSON) and /metrics "
                        "(Prometheus text); off by default")
    g.add_argument("--model", default=None, help=f"codec (default: {DEFAULT_MODEL})")
    g.add_argument("--keep-days", type=positive(float), default=None, help="delete segments older than this")
    g.add_argument("--max-disk", type=size, default=None,
                   help="disk budget, e.g. 20G (with several cameras, shared equally); idle segments go first")
    g.add_argument("--fsync-interval", type=positive(float), default=1.0,
                   help="seconds between fsyncs of the live segment: the most a power cut can lose (default 1)")
    g.add_argument("--max-reconnects", type=int, default=None, help="give up after this many failed reconnects")
    g.add_argument("--run-seconds", type=positive(float), default=None, help="stop after this much wall time")
    add_selection_args(g)
    COMMANDS["ingest"] = cmd_ingest

    k = sub.add_parser("soak", help="load-test live ingestion on this box: N loopback cameras for N seconds",
                       description="Serve CLIPs, looping, as H.264 MPEG-TS streams over local TCP in real time, one "
                                   "per camera (camera k plays clip k modulo their number), ingest them with one "
                                   "`vidsieve ingest --source ...` process for --seconds, and report per camera "
                                   "its kept share, rate, lag and reconnects, and the process's memory over time "
                                   "(one JSON object).")
    k.add_argument("clip", nargs="+", help="footage to loop (mix quiet and busy clips)")
    k.add_argument("--cameras", type=positive(int), default=1, help="loopback cameras (default 1)")
    k.add_argument("--fps", type=positive(float), default=None,
                   help="send every camera at this frame rate (default: each clip's own)")
    k.add_argument("--seconds", type=positive(float), default=600.0, help="how long (default 600)")
    k.add_argument("--segment-seconds", type=positive(float), default=60.0, help="the ingester's (default 60)")
    k.add_argument("--model", default=None, help=f"the ingester's codec (default: {DEFAULT_MODEL})")
    k.add_argument("--detector", default=None, help="the ingester's detector (default: its default, auto)")
    k.add_argument("--kill-at", type=positive(float), default=None, metavar="S",
                   help="kill -9 the ingester after S seconds and check that every camera's live file decodes")
    add_precision_arg(k)
    k.add_argument("--out", default=None, help="also write the result here as JSON")
    COMMANDS["soak"] = cmd_soak


def cmd_soak(a) -> int:
    from ..ingest.soak import soak

    res = soak(a.clip, a.seconds, a.segment_seconds, a.model, a.precision, a.out, cameras=a.cameras,
               kill_at=a.kill_at, detector=a.detector, rate=a.fps)
    print(json.dumps({k: v for k, v in res.items() if k not in ("rss_samples", "degradations", "parts")}))
    if a.kill_at is not None:
        return 0 if res.get("parts_decoded") == len(res.get("parts", {})) else 1
    return 0 if res["exit_code"] == 0 else 1


def cmd_ingest(a) -> int:
    from ..errors import UsageError
    from ..ingest.live import Ingester, IngestOptions, status

    if a.status:
        print(json.dumps(status(a.status), indent=2))
        return 0
    copts = options_from_args(a)
    opts = IngestOptions(segment_seconds=a.segment_seconds or IngestOptions.segment_seconds, keep_days=a.keep_days,
                         max_disk=a.max_disk,
                         fsync_interval=a.fsync_interval, max_reconnects=a.max_reconnects,
                         run_seconds=a.run_seconds, compress=copts)
    if a.status_port is not None and not 0 < a.status_port < 65536:
        raise UsageError(f"--status-port {a.status_port}: not a port number")
    if a.config or a.source:
        from ..ingest.cameras import MultiIngester, cameras_from_sources, load_config, parse_sources

        if a.url:
            raise UsageError("give cameras as URL, --source or --config, not several of them")
        if a.config and a.source:
            raise UsageError("--source and --config do not go together: name every camera in the file")
        port = a.status_port
        if a.config:
            cameras, file_port = load_config(a.config, opts, a.out_dir)
            port = port or file_port
        else:
            if not a.out_dir:
                raise UsageError("--source needs --out-dir")
            cameras = cameras_from_sources(parse_sources(a.source), opts, a.out_dir)
        note = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
        return MultiIngester(cameras, status_port=port, log_fn=note).run()
    if not a.url or not a.out_dir:
        raise UsageError("ingest needs URL and --out-dir, --source NAME=URL, --config FILE, or --status DIR")
    if a.status_port:
        from ..ingest.cameras import Camera, MultiIngester

        return MultiIngester([Camera(a.url, a.url, Path(a.out_dir), opts)], status_port=a.status_port).run()
    return Ingester(a.url, a.out_dir, opts).run()


def _export_inter(a, ckpt: str) -> int:
    """``--export`` of an ``--inter`` checkpoint."""
    from ..training.inter import export_inter

    try:
        w = export_inter(ckpt, a.export, a.export_name, first_pass=a.export_first_pass)
    except ValueError as exc:
        raise VidsieveError(str(exc)) from None
    if not a.quiet:
        print(f"exported {w}")
    return 0


def cmd_train(a) -> int:
    from ..training.export import export
    from ..training.launch import TrainRequest, kept_line, prepare_run

    if a.export_only:
        if not (a.inter and a.resume and a.export):
            raise InputError("--export-only goes with --inter --resume CKPT --export DIR")
        if not os.path.exists(a.resume):
            raise InputError(f"checkpoint not found: {a.resume}")
        return _export_inter(a, a.resume)
    if a.out is None:
        raise UsageError("vidsieve train: --out is required (the checkpoint to write)")

    t = prepare_run(TrainRequest(out=a.out, data=a.data, val=a.val, resume=a.resume,
                                 restart_schedule=a.restart_schedule, finetune=a.finetune, arch=a.arch, N=a.N, M=a.M,
                                 patch=a.patch, batch=a.batch, lr=a.lr, steps=a.steps, max_time=a.max_time,
                                 threads=a.threads, compile=a.compile, inter=a.inter, intra=a.intra,
                                 joint=a.joint, context=a.context, frames=a.frames))
    t.run(max_time=a.max_time, progress=None if not a.quiet else False)
    if a.joint:
        if not a.quiet:
            last = t.history[-1] if t.history else None
            print(f"step {t.step}, {t.elapsed / 60:.1f} min: checkpoint {a.out}" + (
                "" if last is None else f" (training: {last['bpp0']:.4f} bpp alone, {last['bpp1']:.4f} bpp "
                                        f"predicted, loss {last['loss']:.4f})"))
        if a.export:
            from ..training.joint import export_joint

            for w in export_joint(a.out, a.export):
                if not a.quiet:
                    print(f"exported {w}")
        return 0
    if a.inter:
        if not a.quiet:
            last = t.history[-1]["bpp"] if t.history else None
            print(f"step {t.step}, {t.elapsed / 60:.1f} min: checkpoint {a.out}" +
                  ("" if last is None else f" (training rate {last:.4f} bpp of predicted frames)"))
        return _export_inter(a, a.out) if a.export else 0
    if not a.quiet:
        print(f"step {t.step}, {t.elapsed / 3600:.2f} h: checkpoint {a.out}")
        if t.history:
            print("held-out: " + json.dumps(t.history[-1]["val"]))
        if t.cfg.keep_best:
            print(kept_line(t.best))
    if a.export:
        w = export(a.out, a.export)
        if not a.quiet:
            print(f"exported {w}")
    return 0


def cmd_train_detector(a) -> int:
    from ..errors import UsageError
    from ..training import detector as distil

    if bool(a.out) == bool(a.resume):
        raise UsageError("pass --out DIR for a new run, or --resume DIR to go on with one")
    if a.out:
        if not a.teacher or not a.data:
            raise UsageError("a new run needs --teacher and --data (and --val)")
        cfg = distil.DistilConfig(teacher=a.teacher, data=list(a.data), val=list(a.val or []), imgsz=a.imgsz,
                                  width=a.width, depth=a.depth, epochs=a.epochs, batch=a.batch,
                                  label_conf=a.label_conf, frames_per_video=a.frames_per_video, init=a.init)
        run = distil.start(a.out, cfg, progress=not a.quiet)
    else:
        run = distil.Run(a.resume)
        run.config()
    if a.export_only and not (a.resume and a.export):
        raise UsageError("--export-only goes with --resume DIR and --export DIR")
    log = (lambda m: None) if a.quiet else (lambda m: print(m, flush=True))
    if not a.export_only:
        ckpt = distil.train(run, max_time=a.max_time, workers=a.workers, threads=a.threads, log=log)
        if not a.quiet:
            print(f"{run.epochs_done()} epochs: checkpoint {ckpt}")
    if a.export:
        w = distil.export_student(run, a.export)
        if not a.quiet:
            print(f"exported {w}")
    return 0


def cmd_bench(a) -> int:
    from ..bench.runner import run_bench

    for v in a.videos:
        if "://" not in v and not os.path.exists(v):
            raise InputError(f"input not found: {v}")
    codecs = [c.strip() for c in a.codecs.split(",")] if a.codecs else None
    try:
        doc = run_bench(a.videos, a.out, codecs, a.frames, a.points, a.jobs, a.reference_detector, a.detector,
                        progress=None if not a.quiet else False, executor=executor_from_args(a, a.jobs))
    except ValueError as exc:
        raise VidsieveError(str(exc)) from None
    for f in doc["failures"]:
        print(f"vidsieve: failed: {f['clip']} {f['codec']} {f['setting']}: {f['error']}", file=sys.stderr)
    if not a.quiet:
        from ..bench.report import bd_summary

        bd = doc["bd_rate"]
        if bd is None:
            print("no BD-rate: x265, the anchor, was not among the codecs")
        else:
            print(f"BD-rate vs {bd['anchor']} ({bd['metric']}): " + bd_summary(bd["mean"]))
        print(f"report: {os.path.join(a.out, 'report.md')}")
    return 1 if doc["failures"] else 0


def cmd_bench_image(a) -> int:
    from ..bench.image import run_image_bench

    if not os.path.isdir(a.folder):
        raise InputError(f"not a folder of images: {a.folder}")
    doc = run_image_bench(a.folder, a.out, a.model, precision=a.precision, zoo=not a.no_zoo,
                          reference_dir=a.reference, limit=a.limit, progress=None if not a.quiet else False)
    if not a.quiet:
        from ..bench.report import bd_summary

        print("BD-rate vs JPEG (PSNR-RGB, pchip): " + bd_summary(doc["bd_rate_vs_jpeg_psnr_pchip"]))
        print(f"results: {os.path.join(a.out, 'image_results.json')}")
    return 0
