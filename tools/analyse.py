"""Analyses of the codec's weights: held-out comparisons, where the bits go, what fine-tuning buys.

Usage::

    python tools/analyse.py heldout --help
    python tools/analyse.py gap --help
    python tools/analyse.py finetune --help
    python tools/analyse.py conditional --help

Each command's help says what it measures and where it writes; docs/RESULTS.md and
docs/TRAINING.md quote the commands that made their numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import _tool
import numpy as np
import torch
from compressai.ops import quantize_ste
from vidsieve.codec import DEFAULT_MODEL
from vidsieve.codec.models import GainedMeanScaleHyperprior, check_quality, quality_lambda, widths
from vidsieve.codec.payload import pack
from vidsieve.codec.pixels import pad, to_tensor, to_uint8
from vidsieve.codec.registry import gained_from_state, load_codec
from vidsieve.codec.zoo import load_state, load_weights, sha256_file
from vidsieve.datasets.images import IMAGE_EXTS, load_rgb, sample_video_frames
from vidsieve.errors import InputError, ModelError
from vidsieve.files import write_json
from vidsieve.metrics import psnr, psnr_from_mse
from vidsieve.metrics.curves import bd_rate
from vidsieve.training.rd import coded_curve, likelihood_curve, rd_objective
from vidsieve.training.trainer import FINETUNE_LR, TrainConfig, Trainer

# The ``heldout`` command.
DOC_HELDOUT = """Compare two sets of codec weights on held-out images: the check that decides whether a training run is shipped.

``python tools/analyse.py heldout ANCHOR.pth TEST.pth --images DIR [--qualities 1 3 5 8]``

Each image is coded whole (padded to a multiple of 64 by repeating its edge;
rate and PSNR over the original pixels only), with the rate taken from the
model's likelihoods rather than a bitstream: the two agree to within 3 %
(tests/test_heldout.py), the likelihood rate is what training minimises, and
a small change between two runs is not hidden by the coder's byte rounding.
Kodak with real bitstreams (``vidsieve bench-image``) is the number that gets
published; this is the number that says which weights go there, measured on
images neither run was trained on. BD-rate < 0 means TEST needs fewer bits
than ANCHOR for the same PSNR-RGB.
"""


HELDOUT_QUALITIES = (1.0, 3.0, 5.0, 8.0)


def load_model(weights: dict | str | os.PathLike) -> GainedMeanScaleHyperprior:
    """A model in eval mode from a state dict, a weights file or a training checkpoint."""
    state = weights if isinstance(weights, dict) else load_state(weights)
    try:
        model = GainedMeanScaleHyperprior.from_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"not vidsieve codec weights ({str(exc).splitlines()[0]})") from None
    return model.eval()


def compare(anchor, test, images: list[np.ndarray], qualities=HELDOUT_QUALITIES) -> dict:
    """Both curves and the BD-rate (PSNR-RGB, pchip) of ``test`` against ``anchor``, in percent."""
    ca = likelihood_curve(load_model(anchor), images, qualities)
    ct = likelihood_curve(load_model(test), images, qualities)
    bd = bd_rate([{**p, "kbps": p["bpp"]} for p in ca], [{**p, "kbps": p["bpp"]} for p in ct])
    return {"anchor": ca, "test": ct, "bd_rate_psnr_rgb": bd}


def load_images(folders: list[str]) -> list[np.ndarray]:
    files = []
    for d in map(Path, folders):
        if d.is_file():
            files.append(d)
        elif d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        else:
            raise InputError(f"no such file or folder: {d}")
    if not files:
        raise InputError(f"no images in {', '.join(folders)}")
    images = []
    for p in files:
        try:
            images.append(load_rgb(p))
        except OSError as exc:  # PIL's UnidentifiedImageError included
            raise InputError(f"cannot read {p} as an image ({type(exc).__name__})") from None
    return images


def add_heldout(sub) -> None:
    ap = _tool.command(sub, "heldout", DOC_HELDOUT, threads=0, out=None)
    ap.add_argument("anchor", help="weights to compare against (.pth state or training checkpoint)")
    ap.add_argument("test", help="weights under test")
    ap.add_argument("--images", nargs="+", required=True, help="held-out image files or folders")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(HELDOUT_QUALITIES))
    ap.set_defaults(body=heldout_main)


def heldout_main(a) -> None:
    qualities = [check_quality(q) for q in a.qualities]
    if len(qualities) < 3:
        raise InputError("a BD-rate needs at least three qualities")
    res = compare(a.anchor, a.test, load_images(a.images), qualities)
    res = {"anchor_weights": {"file": a.anchor, "sha256": sha256_file(a.anchor)[:12]},
           "test_weights": {"file": a.test, "sha256": sha256_file(a.test)[:12]},
           "images": a.images, **res}
    for name in ("anchor", "test"):
        print(f"{name:6s} " + "  ".join(f"q{p['quality']:g} {p['bpp']:.4f} bpp {p['psnr_rgb']:.2f} dB"
                                          for p in res[name]))
    bd = res["bd_rate_psnr_rgb"]
    print("BD-rate (PSNR-RGB) of test vs anchor: " + ("n/a (curves overlap too little)" if bd is None
                                                       else f"{bd:+.2f} %"))
    if a.out:
        write_json(a.out, res)


# The ``gap`` command.
DOC_GAP = """Where the shipped codec loses bits: the encoder's, the quantiser's and the synthesis's share of the gap.

``python tools/analyse.py gap IMAGES... [--model W] [--qualities 1 4 8] [--refine 30] [--ceiling 100]``

For each image (coded whole, padded as the codec pads) and quality it measures:

* **coded**: the product: a real bitstream of the analysis transform's latent
  (every payload byte counted) and the PSNR-RGB of what the decoder returns.
* **refined**: the latent optimised at encode time for the codec's own loss
  (``lambda * 255^2 * MSE + bpp``; rate from the entropy model with uniform
  noise, distortion through rounding with a straight-through gradient), then
  coded for real. The decoder is unchanged, so what this gains is the
  amortisation gap of the analysis transform (Campos et al., "Content Adaptive
  Optimization for Neural Image Compression", CVPRW 2019; Yang et al.,
  "Improving Inference for Neural Image Compression", NeurIPS 2020).
* **unrounded**: the synthesis of the latent left unrounded: the transforms'
  ceiling at that quality, which no bit rate passes.
* **ceiling** (once per image): the latent optimised for MSE alone and left
  unrounded, the best picture the synthesis transform can draw at all; any
  latent scaled by any inverse gain is among its inputs, so it does not depend
  on the quality.

A large refined gain says the encoder is the weak part; an unrounded PSNR
far above the coded one says the rate is; a ceiling near the unrounded PSNR
says the synthesis is, and only training it (or widening it) moves the curve.
"""


GAP_QUALITIES = (1.0, 4.0, 8.0)
#: The quality whose latent starts the search for the synthesis's ceiling (any would do).
QUALITY_CEILING = 8.0


class Gap:
    """The shipped codec's parts, once for coding (exact, fast) and once for gradients."""

    def __init__(self, state: dict):
        self.grad = load_model(state).requires_grad_(False)
        self.code = load_model(state).for_inference()

    def coded(self, img: np.ndarray, quality: float, y: torch.Tensor | None = None) -> dict:
        """Real bitstream of ``y`` (the analysis transform's latent unless given): bpp and PSNR-RGB."""
        h, w = img.shape[:2]
        if y is None:
            y = self.analysis(img, quality)
        strings, zhw, y_hat = self.code.code_latent(y)
        payload = pack(w, h, quality, zhw, strings)
        rec = to_uint8(self.code.synthesis(y_hat, quality), h, w)
        return {"bpp": 8 * len(payload) / (h * w), "psnr_rgb": psnr(img, rec)}

    def analysis(self, img: np.ndarray, quality: float) -> torch.Tensor:
        """The product's latent of ``img`` at ``quality`` (gained, unrounded)."""
        return self.code.gained_latent(pad(to_tensor(img)), [quality])

    def unrounded(self, img: np.ndarray, quality: float, y: torch.Tensor | None = None) -> float:
        """PSNR-RGB of the synthesis of ``y`` (the analysis's latent unless given) left unrounded."""
        h, w = img.shape[:2]
        if y is None:
            y = self.analysis(img, quality)
        return psnr(img, to_uint8(self.code.synthesis(y, quality), h, w))

    def _bits(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits of ``y`` and of its rounded hyper latent as training estimates them, and
        the means the decoder will predict for ``y``."""
        m = self.grad
        eb = m.entropy_bottleneck
        z = m.h_a(y)
        medians = eb._get_medians()
        zc = z.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1)
        z_hat = quantize_ste(zc - medians) + medians
        z_lik = eb.likelihood_lower_bound(eb._likelihood(z_hat)[0])
        z_hat = z_hat.reshape(z.shape[1], z.shape[0], *z.shape[2:]).permute(1, 0, 2, 3)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        gc = m.gaussian_conditional
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_lik = gc.likelihood_lower_bound(gc._likelihood(y_noisy, scales, means))
        return -(torch.log2(y_lik).sum() + torch.log2(z_lik).sum()), means

    def refine(self, img: np.ndarray, quality: float, iters: int, lr: float = 5e-3,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """The latent after ``iters`` Adam steps on the codec's rate-distortion loss,
        starting from ``y`` (the analysis's latent unless given)."""
        h, w = img.shape[:2]
        x = pad(to_tensor(img))
        y = (self.analysis(img, quality) if y is None else y).clone().requires_grad_(True)
        _, inv_gain = self.grad.gains(torch.tensor([float(quality)]))
        lam = quality_lambda(quality)
        opt = torch.optim.Adam([y], lr=lr)
        for i in range(iters):
            bits, means = self._bits(y)
            y_hat = quantize_ste(y - means) + means
            x_hat = self.grad.g_s(y_hat * inv_gain)[..., :h, :w]
            loss = rd_objective((x_hat - x[..., :h, :w]).square().mean(), bits / (h * w), lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt.param_groups[0]["lr"] = lr * (1 - 0.9 * (i + 1) / iters)
        return y.detach()

    def ceiling(self, img: np.ndarray, iters: int, lr: float = 2e-2) -> float:
        """PSNR-RGB of the best unrounded latent ``iters`` Adam steps on MSE find (best iterate kept)."""
        h, w = img.shape[:2]
        x = pad(to_tensor(img))
        y = self.code.gained_latent(x, [QUALITY_CEILING]).clone().requires_grad_(True)
        _, inv_gain = self.grad.gains(torch.tensor([QUALITY_CEILING]))
        opt = torch.optim.Adam([y], lr=lr)
        best = -1.0
        for _ in range(iters + 1):
            x_hat = self.grad.g_s(y * inv_gain)[..., :h, :w].clamp(0, 1)
            mse = (x_hat - x[..., :h, :w]).square().mean()
            best = max(best, psnr_from_mse(float(mse.detach()) * 255**2))
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
        return best


def gap_measure(state: dict, images: list[np.ndarray], qualities=GAP_QUALITIES, refine_iters: int = 30,
            ceiling_iters: int = 100, progress=None) -> dict:
    """Image-averaged points per quality (coded, refined, unrounded) and the synthesis ceiling."""
    gap = Gap(state)
    per_q = {q: {"coded": [], "refined": [], "unrounded": []} for q in qualities}
    ceilings = []
    for img in images:
        for q in qualities:
            y = gap.analysis(img, q)
            per_q[q]["coded"].append(gap.coded(img, q, y))
            per_q[q]["unrounded"].append(gap.unrounded(img, q, y))
            if refine_iters:
                per_q[q]["refined"].append(gap.coded(img, q, gap.refine(img, q, refine_iters, y=y)))
        if ceiling_iters:
            ceilings.append(gap.ceiling(img, ceiling_iters))
        if progress:
            progress()
    points = []
    for q, r in per_q.items():
        p = {"quality": float(q), "unrounded_psnr_rgb": round(float(np.mean(r["unrounded"])), 4)}
        for kind in ("coded", "refined"):
            if r[kind]:
                p[kind] = {k: round(float(np.mean([v[k] for v in r[kind]])), 5) for k in ("bpp", "psnr_rgb")}
        points.append(p)
    res = {"qualities": points, "refine_iters": refine_iters, "ceiling_iters": ceiling_iters}
    if ceilings:
        res["ceiling_psnr_rgb"] = round(float(np.mean(ceilings)), 4)
    if refine_iters and len(qualities) >= 3:
        res["bd_rate_refined_vs_coded"] = bd_rate([{**p["coded"], "kbps": p["coded"]["bpp"]} for p in points],
                                                  [{**p["refined"], "kbps": p["refined"]["bpp"]} for p in points])
    return res


def add_gap(sub) -> None:
    ap = _tool.command(sub, "gap", DOC_GAP, threads=0, out=None)
    ap.add_argument("images", nargs="+", help="image files or folders (e.g. ../shared/data/images/kodak)")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name or weights file (default: {DEFAULT_MODEL})")
    ap.add_argument("--qualities", nargs="+", type=float, default=list(GAP_QUALITIES),
                    help="qualities to measure (default: 1 4 8)")
    ap.add_argument("--refine", type=int, default=30, metavar="ITERS",
                    help="encode-time optimisation steps per image and quality; 0 skips (default: 30)")
    ap.add_argument("--ceiling", type=int, default=100, metavar="ITERS",
                    help="steps of the search for the synthesis's ceiling per image; 0 skips (default: 100)")
    ap.set_defaults(body=gap_main)


def gap_main(a) -> None:
    from tqdm import tqdm

    qualities = [check_quality(q) for q in a.qualities]
    if a.refine < 0 or a.ceiling < 0:
        raise InputError("--refine and --ceiling take a number of steps, 0 or more")
    state, sha = load_weights(a.model)
    sha = sha[:12]
    images = load_images(a.images)
    with tqdm(total=len(images), desc="images", unit="img", disable=None) as bar:
        res = gap_measure(state, images, qualities, a.refine, a.ceiling, progress=bar.update)
    res = {"model": a.model, "weights_sha256": sha, "images": a.images, "n_images": len(images), **res}
    for p in res["qualities"]:
        line = f"q{p['quality']:g}: coded {p['coded']['bpp']:.4f} bpp {p['coded']['psnr_rgb']:.2f} dB"
        if "refined" in p:
            line += f" | refined {p['refined']['bpp']:.4f} bpp {p['refined']['psnr_rgb']:.2f} dB"
        print(line + f" | unrounded {p['unrounded_psnr_rgb']:.2f} dB")
    if "ceiling_psnr_rgb" in res:
        print(f"synthesis ceiling: {res['ceiling_psnr_rgb']:.2f} dB")
    if res.get("bd_rate_refined_vs_coded") is not None:
        print(f"BD-rate (PSNR-RGB) of refined vs coded: {res['bd_rate_refined_vs_coded']:+.2f} %")
    if a.out:
        write_json(a.out, res)


# The ``finetune`` command.
DOC_FINETUNE = """What fine-tuning on one camera buys: train on a clip's first half, measure on its second half.

    python tools/analyse.py finetune CLIP --minutes 10 --out docs/results/finetune.json

As ``vidsieve train --finetune`` does, the run holds out the last fifth of its
span (the first half's 40 to 50 %) and keeps the weights that do best there,
the starting ones included; the second half, never seen, measures what that
choice buys.
"""


def add_finetune(sub) -> None:
    ap = _tool.command(sub, "finetune", DOC_FINETUNE, out="docs/results/finetune.json")
    ap.add_argument("clip")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="training threads (default 1)")
    ap.add_argument("--eval-frames", type=int, default=8)
    ap.add_argument("--ckpt", default="runs/finetune/ckpt.pth")
    ap.add_argument("--base", default=None, help="weights to start from (default: the shipped model)")
    ap.add_argument("--check-every", type=int, default=200, metavar="STEPS",
                    help="held-out check every this many steps (default 200)")
    ap.add_argument("--keep-last", action="store_true",
                    help="measure the last weights instead of the best on the held-out frames")
    ap.set_defaults(body=finetune_main)


def finetune_main(a) -> None:
    state, sha = load_weights(a.base or DEFAULT_MODEL)
    N, M = widths(state)
    cfg = TrainConfig(data=[a.clip], N=N, M=M,
                      patch=128, batch=8, lr=FINETUNE_LR, steps=100_000, budget_s=a.minutes * 60,
                      threads=a.threads, frames_per_video=60,
                      video_span=(0.0, 0.5), eval_every=a.check_every, keep_best=not a.keep_last)
    t = Trainer(cfg, a.ckpt, init_weights=state)
    t.run(max_time=a.minutes * 60, progress=False)
    test = sample_video_frames(Path(a.clip), a.eval_frames, 0.5, 1.0)
    base = load_codec(a.base or DEFAULT_MODEL)
    if t.best_state is not None and not a.keep_last:
        t.model.load_state_dict(t.best_state)
    t.model.eval()
    t.model.update(force=True)  # the entropy coder's tables, from the kept weights' quantiles
    tuned = gained_from_state(t.model.state_dict(), "finetuned", "finetuned")
    cb, ct = coded_curve(base, test), coded_curve(tuned, test)
    res = {"clip": Path(a.clip).name, "train": "60 frames of the first 40 %",
           "held_out": "12 frames of 40 to 50 %", "test": f"{len(test)} frames of the second half",
           "steps": t.step, "minutes": round(t.elapsed / 60, 1), "base_weights": sha[:16],
           "kept_step": t.best["step"] if t.best and not a.keep_last else t.step,
           "held_out_loss_change_percent": t.best["loss_change"] if t.best and not a.keep_last else None,
           "held_out_bd_rate_percent": t.best["bd_rate"] if t.best and not a.keep_last else None,
           "checks": [{k: h[k] for k in ("step", "loss_change", "val") if k in h} for h in t.history],
           "base": cb, "finetuned": ct, "bd_rate_percent": bd_rate(cb, ct, "psnr_rgb", "pchip")}
    write_json(a.out, res)
    print(json.dumps({k: res[k] for k in ("clip", "steps", "minutes", "kept_step", "held_out_loss_change_percent",
                                          "bd_rate_percent")}))


DOC_CONDITIONAL = """Estimated bits of predicted blocks under conditional models: a baseline, and a model with
context in one pass (its first) and in two.

On consecutive frames of each clip (from --start of it), the difference of each frame's latent
from the previous one's, rounded, at each quality; bits are the float models' likelihoods
(CompressAI's, as training counts them) summed over the quarter of the 64-pixel blocks whose
difference has the most energy: the blocks a predicted frame codes rather than copies. The hyper
latent is left out (both passes share it).

``python tools/analyse.py conditional CLIP ... --model vidsieve-inter-ctx --baseline vidsieve-inter-wide``
"""


def add_conditional(sub) -> None:
    ap = _tool.command(sub, "conditional", DOC_CONDITIONAL, threads=2, out=None)
    ap.add_argument("clips", nargs="+", help="video files")
    ap.add_argument("--model", default="vidsieve-inter-ctx", help="a conditional model with context (name or .pth)")
    ap.add_argument("--baseline", default="vidsieve-inter-wide", help="a conditional model to compare with")
    ap.add_argument("--frames", type=int, default=16, help="consecutive frames per clip (default 16)")
    ap.add_argument("--start", type=float, default=0.3, help="where in each clip they start, 0..1 (default 0.3)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1.0, 4.0, 8.0])
    ap.set_defaults(body=conditional_main)


def conditional_main(a) -> None:
    import torch.nn.functional as F
    from vidsieve.codec.conditional import ConditionalEntropyModel
    from vidsieve.codec.registry import conditional_weights
    from vidsieve.training.inter import cache_video

    codec = load_codec(DEFAULT_MODEL)
    intra = codec.model
    models, shas = {}, {}
    for key, name in (("baseline", a.baseline), ("model", a.model)):
        state, shas[key] = conditional_weights(name)
        models[key] = ConditionalEntropyModel.from_state_dict(state).eval()
        models[key].use_scale_table(intra.gaussian_conditional.scale_table)
    if not models["model"].context:
        raise InputError(f"{a.model} has no context: nothing to compare its passes with")

    def bits(m, diff, ref, two, mask):
        z_hat = torch.round(m.h_a(diff))
        v, mu = m.params(z_hat, ref, diff if two else None)
        lik = m.likelihood._likelihood(torch.round(diff - mu) + mu, m.grid.scale(v), mu)
        return float((-torch.log2(m.likelihood.likelihood_lower_bound(lik)) * mask).sum())

    rows = []
    for clip in a.clips:
        if not Path(clip).is_file():
            raise InputError(f"clip not found: {clip}")
        latents = cache_video(codec, Path(clip), a.frames, (a.start, 1.0))
        if latents is None:
            raise InputError(f"{clip}: fewer than two frames from {a.start:g} of it")
        for q in a.qualities:
            gain, _ = intra.gains(torch.tensor([q]))
            total = np.zeros(3)
            with torch.no_grad():
                for t in range(1, len(latents)):
                    y = torch.from_numpy(latents[t][None].astype(np.float32)) * gain
                    ref = torch.round(torch.from_numpy(latents[t - 1][None].astype(np.float32)) * gain)
                    d = y - ref
                    e = F.avg_pool2d(d.square().sum(1, keepdim=True), 4)  # energy per 64-pixel block
                    mask = (e > e.flatten().quantile(0.75)).float().repeat_interleave(4, -2).repeat_interleave(4, -1)
                    total += [bits(models["baseline"], d, ref, False, mask), bits(models["model"], d, ref, False, mask),
                              bits(models["model"], d, ref, True, mask)]
            per_frame = total / (len(latents) - 1) / 1000
            rows.append({"clip": Path(clip).name, "quality": q, "kbits_per_frame": {
                "baseline": round(per_frame[0], 2), "first_pass": round(per_frame[1], 2),
                "two_passes": round(per_frame[2], 2)},
                "two_passes_vs_first_pass_percent": round(100 * (total[2] / total[1] - 1), 2),
                "first_pass_vs_baseline_percent": round(100 * (total[1] / total[0] - 1), 2),
                "two_passes_vs_baseline_percent": round(100 * (total[2] / total[0] - 1), 2)})
            print(json.dumps(rows[-1]))
    res = {"model": a.model, "model_sha256": shas["model"][:12], "baseline": a.baseline,
           "baseline_sha256": shas["baseline"][:12], "intra": codec.name, "intra_sha256": codec.weights_sha256[:12],
           "frames": a.frames, "start": a.start, "rows": rows}
    if a.out:
        write_json(a.out, res)


def main(argv=None) -> int:
    return _tool.main(__doc__, [add_heldout, add_gap, add_finetune, add_conditional], argv)


if __name__ == "__main__":
    raise SystemExit(main())
