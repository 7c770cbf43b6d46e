"""Download -> checksum verify -> safe extract, for the release files a dataset declares.

A dataset lists its release files as :class:`Resource` entries (official URL, file name,
checksum). :func:`fetch_resources` downloads each one into ``root`` unless a verified copy is
already there, checks it, and unpacks archives through :func:`safe_extract`:

- downloads go to ``<file>.part`` and are renamed only after the checksum matched, so an
  interrupted or corrupt download never looks complete; a mismatch raises
  :class:`ChecksumError` naming the URL and both digests, and removes the partial file;
- a file that verified once gets a ``<file>.verified`` stamp (its digest, size and mtime), so
  it is neither downloaded nor re-hashed again while it is unchanged;
- archives are extracted into a temporary folder next to the destination and moved into place
  only when every member extracted, so nothing is left half-extracted; members with absolute
  paths, ``..`` components, links, or device files are refused (:class:`UnsafeArchiveError`);
- a resource without a published checksum (``checksum=None``) is trusted on first use: its
  SHA-256 is written to ``<file>.sha256`` and later runs verify against it.

Any URL ``urllib`` understands works (``https://``, ``http://``, ``file://``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded file does not match its declared checksum."""


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside the destination (or is a link/device)."""


@dataclass(frozen=True)
class Resource:
    """One release file.

    Attributes:
        url: official download URL.
        filename: local file name under the dataset root.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; None when no digest is published.
        extract_to: sub-folder (relative to root) to unpack an archive into; ``"."`` unpacks
            into root itself; None keeps the file as downloaded.
    """

    url: str
    filename: str
    checksum: str | None = None
    extract_to: str | None = "."


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_checksum(checksum: str) -> tuple[str, str]:
    algo, _, digest = checksum.partition(":")
    if not digest or algo not in hashlib.algorithms_available:
        raise ValueError(f"checksum {checksum!r} must look like 'sha256:<hex>' or 'md5:<hex>'")
    return algo, digest.lower()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stat_key(path: Path) -> list[float]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def is_verified(path: str | os.PathLike[str], checksum: str) -> bool:
    """True when ``path`` exists and matches ``checksum`` (uses the stamp if the file is unchanged)."""
    path = Path(path)
    if not path.is_file():
        return False
    stamp = _stamp(path)
    if stamp.is_file():
        try:
            rec = json.loads(stamp.read_text())
            if rec.get("checksum") == checksum and rec.get("stat") == _stat_key(path):
                return True
        except (OSError, ValueError):
            pass
    algo, digest = _split_checksum(checksum)
    if file_digest(path, algo) != digest:
        return False
    stamp.write_text(json.dumps({"checksum": checksum, "stat": _stat_key(path)}))
    return True


def download_file(url: str, dest: str | os.PathLike[str], checksum: str | None = None) -> Path:
    """Download ``url`` to ``dest`` and verify it; skip the download when ``dest`` already verifies.

    Raises:
        ChecksumError: the downloaded bytes do not match ``checksum`` (the partial file is removed).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sidecar = dest.with_name(dest.name + ".sha256")
    if checksum is None and sidecar.is_file():
        checksum = "sha256:" + sidecar.read_text().split()[0]
    if checksum is not None and is_verified(dest, checksum):
        return dest
    if dest.exists():
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, _CHUNK)
        if checksum is None:
            digest = file_digest(part)
            sidecar.write_text(f"{digest}  {dest.name}\n")
            warnings.warn(
                f"{url}: no published checksum; recorded sha256 {digest} in {sidecar}", stacklevel=2
            )
            checksum = f"sha256:{digest}"
        algo, expected = _split_checksum(checksum)
        got = file_digest(part, algo)
        if got != expected:
            raise ChecksumError(
                f"checksum mismatch for {url} ({dest.name}): expected {algo} {expected}, got {got}; "
                "the partial download was removed"
            )
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)
    _stamp(dest).write_text(json.dumps({"checksum": checksum, "stat": _stat_key(dest)}))
    return dest


def _check_member_name(name: str, archive: Path) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r} (path escapes the destination)")


def _safe_members_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for m in members:
        _check_member_name(m.name, archive)
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: refusing member {m.name!r} (links and devices are not allowed)"
            )
    return members


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a tar (any compression) or zip archive into ``dest``, all or nothing.

    Every member is checked before anything is written; extraction goes to a temporary folder
    beside ``dest`` whose contents are moved into ``dest`` only after it completed.

    Raises:
        UnsafeArchiveError: a member has an absolute path, a ``..`` component, or is a link/device.
        ValueError: ``archive`` is neither a tar nor a zip file.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = _safe_members_tar(tf, archive)
                tf.extractall(tmp, members=members, filter="data")
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member_name(name, archive)
                zf.extractall(tmp)
        else:
            raise ValueError(f"{archive}: not a tar or zip archive")
        for item in tmp.iterdir():
            target = dest / item.name
            if target.is_dir() and item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                if target.is_dir():
                    shutil.rmtree(target)
                item.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_resources(resources: Iterable[Resource], root: str | os.PathLike[str]) -> Path:
    """Download, verify and (for archives) extract every resource into ``root``.

    An archive whose verified digest matches the one recorded at its last extraction is not
    extracted again.
    """
    root = Path(root)
    for res in resources:
        path = download_file(res.url, root / res.filename, res.checksum)
        if res.extract_to is None:
            continue
        marker = root / f".{res.filename}.extracted"
        digest = json.loads(_stamp(path).read_text())["checksum"]
        if marker.is_file() and marker.read_text() == digest:
            continue
        safe_extract(path, root / res.extract_to)
        marker.write_text(digest)
    return root
