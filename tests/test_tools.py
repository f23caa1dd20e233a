"""What the lab's tools (``tools/``, not installed) share, and their command lines."""

from __future__ import annotations

import pytest

from conftest import load_tool, run_tool


def test_speed_results_name_the_processor(tmp_path):
    import platform


    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert load_tool("_tool").cpu_name(info) == "AMD EPYC 7B13 64-Core Processor"
    info.write_text("processor\t: 0\nHardware\t: BCM2835\n")  # no model name (some ARM boards)
    assert load_tool("_tool").cpu_name(info) == (platform.processor() or platform.machine())
    assert load_tool("_tool").cpu_name(tmp_path / "absent") == (platform.processor() or platform.machine())


@pytest.mark.parametrize("tool, commands", [
    ("speed", ["frame", "stream", "batch", "train-step", "detector-sizes"]),
    ("sweep", ["roi", "int8"]),
    ("analyse", ["heldout", "gap", "finetune", "conditional"]),
    ("results", ["deep-compression", "selection", "quality-boost", "quality-stills"]),
    ("footprint", ["components"]),
    ("clips", ["shake"]),
])
def test_every_tool_lists_its_commands_and_refuses_unknown_ones(tool, commands, capsys):
    mod = load_tool(tool)
    for argv in (["--help"], *([c, "--help"] for c in commands)):
        with pytest.raises(SystemExit) as e:
            mod.main(argv)
        out = capsys.readouterr().out
        assert e.value.code == 0 and "usage:" in out, argv
        if argv == ["--help"]:
            assert all(c in out for c in commands), out
    with pytest.raises(SystemExit) as e:
        mod.main(["no-such-command"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_tool_runs_as_the_docs_quote_it():
    r = run_tool("speed", "--help")
    assert r.returncode == 0 and "python tools/speed.py" in r.stdout, r.stderr


def test_a_shaken_clip_moves_each_frame_by_its_offset(tmp_path):
    """tools/clips.py shake: lossless, each frame moved by the offset the schedule gives it."""
    from conftest import read_frames
    from vidsieve.codec.stabilise import shown
    from vidsieve.datasets.synthetic import Scene, write_scene

    src = write_scene(Scene(width=96, height=64, frames=60, noise=0.0), tmp_path / "s.mkv")
    r = run_tool("clips", "shake", src, tmp_path / "shaken.mkv", "--frames", "50")
    assert r.returncode == 0, r.stderr
    offsets = load_tool("clips").shake_offsets(50, 10.0)
    assert offsets[0] == (0, 0) and offsets[-1] == (3, -5) and any(o != (0, 0) for o in offsets[40:45])
    before, _ = read_frames(src)
    after, _ = read_frames(tmp_path / "shaken.mkv")
    assert len(after) == 50
    for i in (0, 42, 49):
        assert (after[i] == shown(before[i], offsets[i])).all(), i
    r = run_tool("clips", "shake", tmp_path / "absent.mkv", tmp_path / "x.mkv")
    assert r.returncode != 0 and r.stderr.startswith("vidsieve: error: clip not found")


def test_the_conditional_analysis_compares_both_passes_with_a_baseline(tmp_path):
    """tools/analyse.py conditional: bits of the most-changed blocks under the baseline and under both
    passes of the shipped model with context, on a generated clip."""
    import json

    from vidsieve.datasets.synthetic import Mover, Scene, write_scene

    src = write_scene(Scene(width=256, height=192, frames=6, noise=1.0, movers=[Mover(0, 6, (300, 140), 0.5)],
                            light_change_at=2), tmp_path / "s.mkv")
    out = tmp_path / "c.json"
    r = run_tool("analyse", "conditional", src, "--frames", "4", "--start", "0", "--qualities", "4", "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["model"] == "vidsieve-inter-ctx" and len(res["rows"]) == 1
    kbits = res["rows"][0]["kbits_per_frame"]
    assert min(kbits.values()) > 0 and kbits["two_passes"] != kbits["first_pass"]
    r = run_tool("analyse", "conditional", src, "--model", "vidsieve-inter-wide")
    assert r.returncode != 0 and "has no context" in r.stderr
