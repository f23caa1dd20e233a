"""A file written on one machine decodes the same on every other: proved on one machine by varying its math.

Every golden stream, and a fresh busy stream (quality maps, quality changes between segments under
``--target-kbps`` feedback, several intra periods) encoded under one set of math back ends, is decoded
in subprocesses under others: MKL's code paths, ATen's instruction sets, thread counts, numpy's SIMD
dispatch, OpenBLAS's core type, and a stand-in for another vendor's math library (every transcendental
function one ulp off, ``exact_canary.py --perturb``). Every variant must give the same exact latents.
A decoder whose state differs anyway stops at the frame where it does (check values), and ``--recover``
resumes at the next intra frame.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from vidsieve.datasets.synthetic import Mover, Scene, write_scene

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
CANARY = HERE / "exact_canary.py"
DOC = json.loads((GOLDEN / "golden.json").read_text())


def _cpu_flags() -> set[str]:
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
        return set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


def _numpy_dispatch() -> str:
    """numpy's dispatched (not baseline) CPU features this machine has: all of them may be switched off."""
    try:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        return ""
    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


def variants() -> dict[str, tuple[dict, bool]]:
    """Name -> (environment, perturbed transcendental functions)."""
    one = {"VIDSIEVE_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    avx512 = "avx512f" in _cpu_flags()
    v = {
        "2 threads": ({"VIDSIEVE_THREADS": "2"}, False),
        "1 thread": (one, False),
        "MKL_CBWR=COMPATIBLE": ({**one, "MKL_CBWR": "COMPATIBLE"}, False),
        "MKL_CBWR=AVX2": ({**one, "MKL_CBWR": "AVX2"}, False),
        "MKL_ENABLE_INSTRUCTIONS=SSE4_2": ({**one, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, False),
        "ATEN_CPU_CAPABILITY=default": ({**one, "ATEN_CPU_CAPABILITY": "default"}, False),
        "ATEN_CPU_CAPABILITY=avx2": ({**one, "ATEN_CPU_CAPABILITY": "avx2"}, False),
        "NPY_DISABLE_CPU_FEATURES, OPENBLAS_CORETYPE=Haswell": (
            {**one, "NPY_DISABLE_CPU_FEATURES": _numpy_dispatch(), "OPENBLAS_CORETYPE": "Haswell"}, False),
        "another math library (perturbed exp/log/pow)": (one, True),
    }
    if avx512:
        v["MKL_CBWR=AVX512, ATEN_CPU_CAPABILITY=avx512"] = (
            {**one, "MKL_CBWR": "AVX512", "ATEN_CPU_CAPABILITY": "avx512"}, False)
    return v


VARIANTS = variants()
#: The variant the fresh stream is encoded under: the one whose library math differs from every other's.
ENCODE_VARIANT = "another math library (perturbed exp/log/pow)"


def run_canary(variant: str, *args: str, timeout: float = 900) -> dict:
    env, perturbed = VARIANTS[variant]
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MKL_", "ATEN_", "NPY_", "OPENBLAS_"))}
    full.update(env, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(CANARY), *(["--perturb"] if perturbed else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=timeout)
    assert r.returncode == 0, f"{variant}: {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


#: A busy scene: people-sized movers entering every two seconds, crossing in both directions, the light
#: changing halfway (a scene long enough for several intra periods and rate-control segments).
BUSY_FRAMES = 240


def busy_scene(frames: int = BUSY_FRAMES) -> Scene:
    movers = [Mover(k, k + 35, (300 + (k * 7) % 200, 120 + (k * 3) % 100), 0.15 + ((k * 13) % 70) / 100,
                    direction=1 if k % 40 else -1) for k in range(0, frames, 20)]
    return Scene(width=128, height=128, frames=frames, noise=2.0, movers=movers, light_change_at=frames // 2)


#: Motion boxes make quality maps; the target makes segments' qualities move; 3 s intra periods.
BUSY_SETTINGS = {"detector": "motion", "max_gap": 0.5, "segment_seconds": 1.5, "intra_period": 3.0,
                 "roi_boost": 2.0, "roi_background": -1.0, "target_kbps": 90.0}


@pytest.fixture(scope="module")
def busy_stream(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("busy")
    src = write_scene(busy_scene(), d / "busy.mkv")
    out = d / "busy.vsv"
    run_canary(ENCODE_VARIANT, "encode", str(src), str(out), json.dumps(BUSY_SETTINGS), timeout=1200)
    return out


@pytest.fixture(scope="module")
def all_sums(busy_stream) -> dict[str, dict]:
    """Every variant's checksums of every golden stream and of the busy stream (two variants at a time)."""
    files = [str(GOLDEN / name) for name in sorted(DOC["streams"])] + [str(busy_stream)]
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run_canary, name, "sums", *files) for name in VARIANTS}
        return {name: f.result() for name, f in futures.items()}


def test_the_busy_stream_is_what_the_canary_needs(busy_stream):
    """Long, predicted, with maps, qualities that move between segments, and several intra periods."""
    from vidsieve.codec.payload import PREDICTED, unpack
    from vidsieve.codec.quality_map import has_map
    from vidsieve.container import ContainerReader, FrameRecord

    with ContainerReader(busy_stream) as reader:
        recs = [r for r in reader.records() if isinstance(r, FrameRecord)]
    assert len(recs) >= BUSY_FRAMES * 0.9
    assert sum(r.intra for r in recs) >= 5
    predicted = [r for r in recs if not r.intra]
    assert all(unpack(r.payload).version == PREDICTED for r in predicted)
    assert sum(has_map(r.payload) for r in predicted) >= 50
    assert len({round(r.quality, 3) for r in predicted}) >= 3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_math_back_end_decodes_the_same_latents(all_sums, busy_stream, variant):
    got = all_sums[variant]
    for name, g in DOC["streams"].items():
        assert got[name] == [f.get("latent_sha256", f.get("symbols_sha256")) for f in g["frames"] if f["kept"]], name
    base = all_sums["2 threads"][busy_stream.name]
    assert len(base) >= BUSY_FRAMES * 0.9 and got[busy_stream.name] == base


# -- divergence ----------------------------------------------------------------------------------------------

def _nudged(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[0] = torch.nextafter(out.view(-1)[0], torch.tensor(np.inf, dtype=out.dtype))
    return out


@pytest.fixture(scope="module")
def short_stream(tmp_path_factory) -> Path:
    """40 frames, an intra frame every 2 s."""
    from vidsieve.pipeline import CompressOptions, compress

    d = tmp_path_factory.mktemp("short")
    src = write_scene(Scene(width=128, height=128, frames=40, noise=1.0, movers=[Mover(2, 38, (400, 300), 0.3)]),
                      d / "short.mkv")
    out = d / "short.vsv"
    compress(src, out, CompressOptions(keep_all=True, quality=4.0, intra_period=2.0), progress=False)
    return out


def test_a_reference_one_ulp_off_stops_at_that_frame_and_recover_resumes_at_the_next_intra(short_stream,
                                                                                            monkeypatch, tmp_path):
    from vidsieve.codec.latent_codecs import DivergenceError
    from vidsieve.codec.predictive import PredictiveStreamDecoder
    from vidsieve.errors import FormatError
    from vidsieve.pipeline import decoded_frames, decompress

    clean = [(d.pts, d.kept) for d in decoded_frames(short_stream)]
    assert all(kept for _, kept in clean)
    pts = [p for p, _ in clean]
    bad_after = pts[5]  # frames 6.. are predicted from frame 5's latents; the next intra frame is frame 20
    decode = PredictiveStreamDecoder.decode

    def nudging(self, data, p, intra=True, ref_pts=None):
        out = decode(self, data, p, intra, ref_pts)
        if p == bad_after:
            self.refs.prev = _nudged(self.refs.prev)  # one ulp, one element
        return out

    monkeypatch.setattr(PredictiveStreamDecoder, "decode", nudging)
    with pytest.raises(DivergenceError, match=f"pts {pts[6]}.*--recover"):
        list(decoded_frames(short_stream))
    assert issubclass(DivergenceError, FormatError)  # a one-line error and exit code 2 on the CLI

    summary = decompress(short_stream, f"{tmp_path}/out/", recover=True, progress=False)
    assert summary.frames == len(clean)  # nothing lost from the timeline
    assert summary.coded == len(clean) - 14  # frames 6..19 hold frame 5's picture; frame 20 is an intra frame
