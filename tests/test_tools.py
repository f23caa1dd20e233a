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
    ("analyse", ["heldout", "gap", "finetune"]),
    ("results", ["deep-compression", "selection", "quality-boost", "quality-stills"]),
    ("footprint", ["components"]),
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
