"""Files written whole or not at all (``files.py``)."""

from __future__ import annotations

import json

import pytest

from vidsieve.files import replacing, write_json


def test_results_are_written_whole_or_not_at_all(tmp_path):
    p = write_json(tmp_path / "deep" / "r.json", {"bd": -18.0})
    assert json.loads(p.read_text()) == {"bd": -18.0}
    # A result that cannot be written leaves the previous one, and no temp file beside it.
    with pytest.raises(TypeError):
        write_json(p, {"bd": object()})
    assert json.loads(p.read_text()) == {"bd": -18.0}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def test_a_failed_write_leaves_nothing_and_a_clean_one_replaces(tmp_path):
    target = tmp_path / "w.bin"
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with replacing(target) as tmp:
        tmp.write_bytes(b"whole")
        assert not target.exists()  # under its temporary name until the block ends
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
