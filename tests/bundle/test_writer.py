"""The generic bundle writer: manifest checksums match the bytes written, folder and archive appear whole or
not at all, a rewrite replaces the old bundle, and tampering is detected."""
from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from edgeincep import __version__
from edgeincep.bundle.writer import verify_bundle, write_bundle
from edgeincep.core.errors import OutputError, UserError
from edgeincep.fsutil import sha256_file


def _files(tmp_path: Path) -> dict:
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(4096))
    return {"model.bin": src, "labels.json": '["a", "b"]', "run.sh": b"#!/bin/sh\necho hi\n", "docs/README.md": "# hi\n"}


def test_manifest_lists_every_file_with_its_checksum_and_the_facts_given(tmp_path):
    res = write_bundle(tmp_path / "out" / "dev", _files(tmp_path), manifest={"recipe": {"x": 1}, "drift": {"a": 0.5}},
                       executable={"run.sh"})
    folder = tmp_path / "out" / "dev"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema"] == "edgeincep.bundle/1" and manifest["edgeincep_version"] == __version__
    assert manifest["recipe"] == {"x": 1} and manifest["drift"] == {"a": 0.5}
    assert set(manifest["files"]) == {"model.bin", "labels.json", "run.sh", "docs/README.md"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(folder / name) and entry["size"] == (folder / name).stat().st_size
    assert manifest["files"]["model.bin"]["sha256"] == sha256_file(tmp_path / "weights.bin")
    assert os.access(folder / "run.sh", os.X_OK) and not os.access(folder / "labels.json", os.X_OK)
    assert verify_bundle(folder) == []
    assert res.to_dict()["archive"] == str(tmp_path / "out" / "dev.tar.gz")


def test_archive_holds_the_same_bytes_under_one_top_folder(tmp_path):
    res = write_bundle(tmp_path / "dev", _files(tmp_path))
    with tarfile.open(res.archive) as tar:
        names = set(tar.getnames())
        assert names >= {"dev/manifest.json", "dev/model.bin", "dev/docs/README.md"}
        assert tar.extractfile("dev/model.bin").read() == (res.folder / "model.bin").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders or .part files left


def test_rewriting_replaces_the_old_bundle_whole(tmp_path):
    write_bundle(tmp_path / "dev", {"old.txt": "old", "keep.txt": "v1"})
    write_bundle(tmp_path / "dev", {"keep.txt": "v2"})
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["keep.txt", "manifest.json"]
    assert (tmp_path / "dev" / "keep.txt").read_text() == "v2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_the_previous_bundle_untouched(tmp_path):
    write_bundle(tmp_path / "dev", {"keep.txt": "v1"})
    with pytest.raises(OutputError, match="could not write the bundle"):
        write_bundle(tmp_path / "dev", {"keep.txt": "v2", "model.bin": tmp_path / "missing.bin"})
    assert (tmp_path / "dev" / "keep.txt").read_text() == "v1" and verify_bundle(tmp_path / "dev") == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_tampered_missing_and_extra_files_are_reported(tmp_path):
    res = write_bundle(tmp_path / "dev", _files(tmp_path))
    (res.folder / "labels.json").write_text('["a", "c"]')
    (res.folder / "run.sh").unlink()
    (res.folder / "stray.txt").write_text("?")
    assert sorted(verify_bundle(res.folder)) == ["labels.json: content differs from the manifest", "run.sh: missing",
                                                 "stray.txt: not in the manifest"]


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "manifest.json"])
def test_unsafe_or_reserved_names_are_refused(tmp_path, name):
    with pytest.raises(UserError, match="not a plain relative path"):
        write_bundle(tmp_path / "dev", {name: "x"})
    assert not (tmp_path / "dev").exists()


def test_a_file_where_the_bundle_folder_should_be_is_a_clean_error(tmp_path):
    (tmp_path / "dev").write_text("not a folder")
    with pytest.raises(OutputError, match="is not a bundle folder"):
        write_bundle(tmp_path / "dev", {"a.txt": "x"})
    assert (tmp_path / "dev").read_text() == "not a folder"
