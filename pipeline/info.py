"""``vidsieve info``: everything a user or program wants to know about a ``.vsv`` file."""

from __future__ import annotations

import os
import warnings

from ..container import REC_GAP, REC_META, REC_SEGMENT, ContainerReader, FrameRecord, IndexRecord, JsonRecord, SkipRecord
from ..codec.latent_codecs import SKIP_BG, SKIP_PREV, block_modes, picture_shift
from ..codec.payload import unpack
from ..codec.quality_map import has_map
from ..errors import FormatError


def _coded_quality(payload: bytes) -> float | None:
    """The quality a frame was coded at (its payload's), beside the one the selector asked for."""
    try:
        return round(unpack(payload).quality, 4)
    except FormatError:
        return None


def _quality_groups(coded: list[dict]) -> list[dict]:
    """Runs of frames by kind, asked and coded quality, in order of first appearance, with their counts."""
    groups: dict[tuple, dict] = {}
    for f in coded:
        key = ("intra" if f["intra"] else "predicted", f["asked"], f["coded"])
        g = groups.setdefault(key, {"frame": key[0], "asked": key[1], "coded": key[2], "frames": 0})
        g["frames"] += 1
    return list(groups.values())


def _coded_size(h) -> list[int]:
    """The size a file's frames are coded at (a scaled stream's, or the shown size); a damaged description
    reads as the shown size here (decoding it says what is wrong)."""
    scale = h.stream.get("scale")
    coded = scale.get("coded") if isinstance(scale, dict) else None
    if isinstance(coded, list) and len(coded) == 2 and all(type(v) is int and v > 0 for v in coded):
        return coded
    return [h.width, h.height]


def info(path: str | os.PathLike, recover: bool = False) -> dict:
    """Everything a user or program wants to know about a ``.vsv`` file."""
    with ContainerReader(path, recover=recover) as reader:
        h = reader.header
        frames = coded = payload = 0
        gops: list[int] = []  # coded frames per group of pictures (an intra frame and those predicted from it)
        blocks = skipped = mapped = shifted = 0
        segments, gaps, meta = [], [], {}
        per_frame: list[dict] = []
        first = last = None
        index_entries = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for rec in reader.records():
                    if isinstance(rec, FrameRecord):
                        coded += 1
                        frames += 1
                        payload += len(rec.payload)
                        if rec.intra or not gops:
                            gops.append(0)
                        gops[-1] += 1
                        mapped += has_map(rec.payload)
                        per_frame.append({"pts": rec.pts, "intra": rec.intra, "asked": round(rec.quality, 4),
                                      "coded": _coded_quality(rec.payload), "bytes": len(rec.payload)})
                        modes = None if rec.intra else block_modes(rec.payload)
                        if modes is not None:
                            shifted += picture_shift(unpack(rec.payload)) != (0, 0)
                            blocks += modes.size
                            skipped += int(((modes == SKIP_PREV) | (modes == SKIP_BG)).sum())
                        first = rec.pts if first is None else min(first, rec.pts)
                        last = rec.pts if last is None else max(last, rec.pts)
                    elif isinstance(rec, SkipRecord):
                        frames += len(rec.pts)
                        if rec.pts:
                            last = max(last if last is not None else rec.pts[-1], max(rec.pts))
                    elif isinstance(rec, JsonRecord):
                        if rec.kind == REC_SEGMENT:
                            seg = dict(rec.data)
                            if "kept" in seg and "selected" not in seg:  # what files written before said
                                seg["selected"] = seg.pop("kept")
                            segments.append(seg)
                        elif rec.kind == REC_GAP:
                            gaps.append(rec.data)
                        elif rec.kind == REC_META:
                            meta.update(rec.data)
                    elif isinstance(rec, IndexRecord):
                        index_entries = len(rec.entries)
                error = None
            except FormatError as exc:
                error = str(exc)
        size = reader.size
        duration = float((last - first) * h.time_base + 1 / h.fps) if first is not None else 0.0
        if error:
            integrity = "corrupt"
        elif reader.damaged:
            integrity = "recovered"
        elif reader.truncated_at is not None:
            integrity = "truncated"
        elif reader.has_index:
            integrity = "complete"
        else:
            integrity = "unfinished"
        predicted = h.stream.get("coder") == "predictive"
        return {
            "file": str(path),
            "header": h.to_json(),
            # Coded: frames with a record of their own; held: shown as the coded frame before them; selected:
            # the frames selection picked (where frames are predicted, the others are coded too, mostly as copies).
            "frames": frames, "coded": coded, "held": frames - coded,
            "selected": sum(s.get("selected", 0) for s in segments) if segments else None,
            "duration_s": round(duration, 4),
            "bytes": size, "frame_bytes": payload,
            "kbps": round(size * 8 / 1000 / duration, 3) if duration > 0 else 0.0,
            "segments": segments, "gaps": gaps, "summary": meta.get("summary"),
            "integrity": integrity, "error": error,
            "truncated_at": reader.truncated_at,
            "damaged": [{"offset": o, "reason": r} for o, r in reader.damaged],
            "index_entries": index_entries,
            "stream": h.stream.get("coder", "intra"),
            "coded_size": _coded_size(h),
            "gop": {"intra": len(gops) if predicted else coded, "predicted": coded - (len(gops) if predicted else coded),
                    "longest": max(gops, default=0) if predicted else min(coded, 1),
                    "skipped_block_share": round(skipped / blocks, 4) if blocks else None,
                    "mapped": mapped, "shifted": shifted,
                    "conditional": h.stream.get("conditional") if predicted else None},
            "qualities": _quality_groups(per_frame),
            "coded_frames": per_frame,
            "warnings": [str(w.message) for w in caught],
        }
