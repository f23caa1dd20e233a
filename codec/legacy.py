"""What predicted frames of payload version 4 need to decode as they were written.

Those frames rescaled their references with gains computed by a float32 ``exp``
in torch, which hands it to MKL's vector math; MKL picks its code path from the
processor, and on some processors that path returns other last bits. The files
were written on machines whose MKL took its compatible path (MKL's conditional
numerical reproducibility, ``MKL_CBWR=COMPATIBLE``, the same results on every
processor), so that is the path they decode with: a helper process, started
once with that setting pinned, computes those ``exp`` values; the rest of the
old rule (the interpolation between quality levels in float32) is basic
arithmetic and runs here (:func:`~.exact.interpolate_levels`).

Streams written now never need this (payload version 5: :mod:`.exact`).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading

import numpy as np

from ..errors import FormatError
from .exact import interpolate_levels

# Reads a count and that many float32 values, writes their float32 exp as torch computes it.
_HELPER = r"""
import struct, sys
import numpy as np
import torch
torch.set_num_threads(1)
out, inp = sys.stdout.buffer, sys.stdin.buffer
out.write(b"1" if torch.backends.mkl.is_available() else b"0")
out.flush()
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    (n,) = struct.unpack("<I", head)
    x = np.frombuffer(inp.read(4 * n), dtype=np.float32).copy()
    out.write(torch.from_numpy(x).exp().numpy().tobytes())
    out.flush()
"""

#: Environment variables that steer MKL's code path: the helper drops them and pins the compatible path.
_MKL_STEERING = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE")


class _ExpHelper:
    def __init__(self):
        env = {k: v for k, v in os.environ.items() if k not in _MKL_STEERING}
        env.update(MKL_CBWR="COMPATIBLE", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", _HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.mkl = self.proc.stdout.read(1) == b"1"
        self.cache: dict[int, np.float32] = {}
        self.lock = threading.Lock()

    def exp(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        bits = x.view(np.uint32).reshape(-1)
        with self.lock:
            todo = np.unique(bits[[int(b) not in self.cache for b in bits]]) if bits.size else bits
            if todo.size:
                self.proc.stdin.write(struct.pack("<I", todo.size) + todo.tobytes())
                self.proc.stdin.flush()
                got = self.proc.stdout.read(4 * todo.size)
                if len(got) != 4 * todo.size:
                    raise FormatError("the helper that decodes payload version 4 stopped")
                for b, v in zip(todo.tolist(), np.frombuffer(got, dtype=np.float32)):
                    self.cache[b] = v
            return np.array([self.cache[int(b)] for b in bits], dtype=np.float32).reshape(x.shape)


_helper: _ExpHelper | None = None


def _exp_helper() -> _ExpHelper:
    global _helper
    if _helper is None or _helper.proc.poll() is not None:
        _helper = _ExpHelper()
    if not _helper.mkl:
        raise FormatError("this file's predicted frames (payload version 4) decode exactly only where torch is "
                          "built with MKL; re-encode it with this version")
    return _helper


def gains_f32(log_gain: np.ndarray, log_inv_gain: np.ndarray, qualities) -> tuple[np.ndarray, np.ndarray]:
    """Gains and inverse gains of payload version 4 (float32 values, [len(qualities), M])."""
    q = np.asarray(qualities, dtype=np.float32)
    g = interpolate_levels(np.asarray(log_gain, np.float32), q, np.float32)
    ig = interpolate_levels(np.asarray(log_inv_gain, np.float32), q, np.float32)
    helper = _exp_helper()
    return helper.exp(g), helper.exp(ig)
