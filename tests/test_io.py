"""Atomic writes and workspace paths."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from helpers.base import io, paths


def test_write_csv_and_json_roundtrip_and_leave_no_temporary_files(tmp_path):
    df = pd.DataFrame({"case_id": ["a", "b"], "value": [0.5, np.nan]})
    path = io.write_csv(df, tmp_path / "deep" / "folder" / "t.csv")
    back = pd.read_csv(path)
    assert back["case_id"].tolist() == ["a", "b"]
    assert back["value"].iloc[0] == 0.5 and np.isnan(back["value"].iloc[1])  # NaN stays explicit (empty field)
    io.write_json({"n": np.int64(3), "x": np.float32(0.25), "arr": np.arange(2)}, tmp_path / "m.json")
    assert io.read_json(tmp_path / "m.json") == {"arr": [0, 1], "n": 3, "x": 0.25}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "folder", "m.json", "t.csv"]


def test_failed_write_keeps_the_previous_file_intact(tmp_path):
    target = tmp_path / "result.txt"
    io.write_text(target, "old result")

    def broken(path):
        path.write_text("half-writ")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        io.atomic_write(target, broken)
    assert target.read_text() == "old result"
    assert os.listdir(tmp_path) == ["result.txt"]


def test_save_npz_keeps_the_npz_suffix(tmp_path):
    path = io.save_npz(tmp_path / "case.npz", image=np.ones((2, 3), np.float32))
    with np.load(path) as data:
        assert data["image"].shape == (2, 3)


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.json: file not found"):
        io.read_json(tmp_path / "nothere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        io.read_json(tmp_path / "bad.json")
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        io.write_json({"x": object()}, tmp_path / "x.json")


def test_relative_paths_resolve_against_the_project_root_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    ws = paths.Workspace.at("build/ws")
    assert ws.root == (tmp_path / "build" / "ws").resolve()
    assert ws.results("wmh") == ws.root / "results" / "wmh"
    assert ws.results() == ws.root / "results"
    assert ws.predictions("lits", "unet") == ws.root / "predictions" / "lits" / "unet"
    assert ws.executed("study") == ws.root / "book" / "executed" / "study"
    assert paths.relative(ws.root / "results") == "build/ws/results"
    assert paths.resolve("/abs/path") == paths.Path("/abs/path")


def test_workspace_at_is_idempotent_and_checks_its_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ws = paths.Workspace.at("build/ws")
    assert paths.Workspace.at(ws) is ws
    assert paths.Workspace.at(tmp_path / "build" / "ws") == ws == paths.Workspace.at(str(ws.root))
    with pytest.raises(TypeError, match="workspace must be a path or a Workspace, got int: 3"):
        paths.Workspace.at(3)


def test_project_root_is_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("HONEST_PROJECT_ROOT", raising=False)
    (tmp_path / "_config.yml").write_text("title: x\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert paths.project_root() == tmp_path.resolve()


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_of_the_umask_not_the_temporary_files(tmp_path, umask, expected):
    # mkstemp creates 0600; a file written by plain open() under umask u has mode 0666 & ~u
    old = os.umask(umask)
    try:
        assert io.current_umask() == umask
        written = [
            io.write_text(tmp_path / "a.txt", "x"),
            io.write_json({"a": 1}, tmp_path / "sub" / "b.json"),
            io.save_npz(tmp_path / "c.npz", a=np.zeros(2)),
        ]
    finally:
        os.umask(old)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name


def test_read_errors_name_the_file_once(tmp_path):
    from helpers.base.io import read_errors

    path = tmp_path / "case_001.nii.gz"
    with pytest.raises(ValueError, match=r"^.*case_001\.nii\.gz: cannot read mask \(EOFError: truncated\)$"):
        with read_errors(path, "mask"):
            raise EOFError("truncated")
    with pytest.raises(ValueError, match=r"case_001\.nii\.gz: cannot read prediction \(bad header\)$"):
        with read_errors(path, "prediction"):
            raise ValueError("bad header")
    named = ValueError(f"{path}: expected a 3D volume, got shape (2, 2)")  # already names the file: unchanged
    with pytest.raises(ValueError) as err:
        with read_errors(path, "mask"):
            raise named
    assert err.value is named
    with read_errors(path, "mask"):
        value = 1  # no error: nothing happens
    assert value == 1
