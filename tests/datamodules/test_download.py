"""Download path: checksum verification, safe extraction, no re-download (file:// and a local HTTP server)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from datamodules.download import (
    ChecksumError,
    Resource,
    UnsafeArchiveError,
    download_file,
    fetch_resources,
    safe_extract,
)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_verifies_extracts_and_never_downloads_twice(server, tmp_path):
    url, srv, log = server
    archive = _tar(srv / "release.tar.gz", {"data/a.txt": b"hello", "data/sub/b.txt": b"world"})
    res = Resource(url + "release.tar.gz", "release.tar.gz", _sha(archive), extract_to="unpacked")
    root = tmp_path / "root"
    fetch_resources([res], root)
    assert (root / "unpacked/data/a.txt").read_bytes() == b"hello"
    assert (root / "unpacked/data/sub/b.txt").read_bytes() == b"world"
    assert log == ["/release.tar.gz"]
    (root / "unpacked/data/a.txt").write_bytes(b"edited")  # not re-extracted either
    fetch_resources([res], root)
    assert log == ["/release.tar.gz"]
    assert (root / "unpacked/data/a.txt").read_bytes() == b"edited"
    assert not list(root.glob("*.part"))


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    url, srv, _ = server
    _tar(srv / "release.tar.gz", {"a.txt": b"hello"})
    bad = Resource(url + "release.tar.gz", "release.tar.gz", "md5:" + "0" * 32)
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match=r"release.tar.gz.*expected md5 0{32}, got [0-9a-f]{32}"):
        fetch_resources([bad], root)
    assert sorted(p.name for p in root.iterdir()) == []


def test_checksum_mismatch_over_file_url(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"payload")
    with pytest.raises(ChecksumError, match="x.bin"):
        download_file(src.as_uri(), tmp_path / "dl" / "x.bin", "sha256:" + "f" * 64)
    assert not any((tmp_path / "dl").iterdir())
    out = download_file(src.as_uri(), tmp_path / "dl" / "x.bin", _sha(src))
    assert out.read_bytes() == b"payload"


def test_unverified_resource_is_pinned_on_first_use(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "dl" / "x.bin"
    with pytest.warns(UserWarning, match="no published checksum"):
        download_file(src.as_uri(), dest)
    assert (tmp_path / "dl" / "x.bin.sha256").read_text().startswith(hashlib.sha256(b"payload").hexdigest())
    src.write_bytes(b"tampered")
    dest.unlink()
    with pytest.raises(ChecksumError):
        download_file(src.as_uri(), dest)


@pytest.mark.parametrize("member", ["../x", "/abs/x", "a/../../x"])
def test_path_traversal_in_tar_is_refused(tmp_path, member):
    archive = _tar(tmp_path / "evil.tar.gz", {"ok.txt": b"fine", member: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing member"):
        safe_extract(archive, dest)
    assert not (tmp_path / "x").exists()
    assert list(dest.iterdir()) == []  # nothing half-extracted


def test_links_in_tar_and_traversal_in_zip_are_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="links"):
        safe_extract(archive, tmp_path / "out")
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("good.txt", "ok")
        zf.writestr("../evil.txt", "bad")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zpath, tmp_path / "zout")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "zout").iterdir()) == []


def test_zip_extracts(tmp_path):
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("top/inner.txt", "ok")
    safe_extract(zpath, tmp_path / "out")
    assert (tmp_path / "out/top/inner.txt").read_text() == "ok"
