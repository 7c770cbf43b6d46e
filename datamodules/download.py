"""Download -> checksum verify -> safe extract, for the release files a dataset declares.

A dataset lists its release files as :class:`Resource` entries (official URL, file name,
checksum). :func:`fetch_resources` uses each file already in ``root`` (placed there by hand, e.g.
on a compute node without internet) or downloads it when allowed, checks it, and unpacks
archives through :func:`safe_extract`:

- downloads go to ``<file>.part`` and are renamed only after the checksum matched, so an
  interrupted or corrupt download never looks complete; a mismatch raises
  :class:`ChecksumError` naming the URL and both digests, and removes the partial file;
- a file that verified once gets a ``<file>.verified`` stamp (its digest, size and mtime), so
  it is neither downloaded nor re-hashed again while it is unchanged;
- archives are extracted into a temporary folder next to the destination and moved into place
  only when every member extracted, so nothing is left half-extracted; members with absolute
  paths, ``..`` components, links, or device files are refused (:class:`UnsafeArchiveError`);
- a resource without a published checksum (``checksum=None``) is trusted on first use, whether
  downloaded or placed by hand: its SHA-256 is written to ``<file>.sha256`` and later runs
  verify against it;
- segbench never deletes or replaces a file it finds at a release file's path: a present file
  that does not match its checksum is an error naming it (move it away to download again);
- extraction never deletes or overwrites anything that a previous extraction of the same
  archive did not write: each extraction records the files it wrote in
  ``<dest>/.segbench-extract-<archive>.json``; any other existing path that a member would
  replace (a file, or a folder where the archive holds a file) is a clash, an
  :class:`ExtractClashError` naming both paths, raised before anything is moved into place. An
  existing file with exactly the member's bytes is left alone;
- downloads and extractions show a tqdm progress bar (on a terminal).

Every network access goes through :func:`_open_url`. Any URL ``urllib`` understands works
(``https://``, ``http://``, ``file://``).
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
from typing import IO

from tqdm.auto import tqdm

_CHUNK = 1 << 20
_MANIFEST = ".segbench-extract-{}.json"


class ChecksumError(RuntimeError, ValueError):
    """A downloaded or present file does not match its declared (or recorded) checksum."""


class UnsafeArchiveError(RuntimeError, ValueError):
    """An archive member would be written outside the destination (or is a link/device)."""


class ExtractClashError(RuntimeError, ValueError):
    """An archive member would replace a path that no earlier extraction of that archive wrote."""


@dataclass(frozen=True)
class Resource:
    """One release file.

    Attributes:
        url: official download URL.
        filename: local file name under the dataset root.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; None when no digest is published.
        extract_to: sub-folder (relative to root) to unpack an archive into; ``"."`` unpacks
            into root itself; None keeps the file as downloaded.
        manual: the file cannot be fetched automatically (registration, request): segbench uses
            it when it is placed in root and never downloads it.
    """

    url: str
    filename: str
    checksum: str | None = None
    extract_to: str | None = "."
    manual: bool = False


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


def _open_url(url: str) -> IO[bytes]:
    """The only network access of segbench's data layer (tests replace it to prove offline use)."""
    return urllib.request.urlopen(url)


def _recorded_checksum(dest: Path) -> str | None:
    sidecar = dest.with_name(dest.name + ".sha256")
    return "sha256:" + sidecar.read_text().split()[0] if sidecar.is_file() else None


def _pin(data: Path, dest: Path, origin: str) -> str:
    """Trust ``data`` (the bytes of ``dest``) on first use: record its SHA-256 as ``<dest>.sha256``."""
    digest = file_digest(data)
    sidecar = dest.with_name(dest.name + ".sha256")
    sidecar.write_text(f"{digest}  {dest.name}\n")
    warnings.warn(f"{origin}: no published checksum; recorded sha256 {digest} in {sidecar}", stacklevel=3)
    return f"sha256:{digest}"


def verify_present(dest: str | os.PathLike[str], checksum: str | None = None) -> str:
    """Check a release file that is already at ``dest``; return the checksum it matched.

    Without ``checksum`` the one recorded at first use (``<file>.sha256``) is used; without either
    the file is trusted on first use (its SHA-256 recorded). The file is never deleted.

    Raises:
        ChecksumError: the file does not match (names the file and both digests).
    """
    dest = Path(dest)
    checksum = checksum or _recorded_checksum(dest)
    if checksum is None:
        checksum = _pin(dest, dest, str(dest))
    elif not is_verified(dest, checksum):
        algo, expected = _split_checksum(checksum)
        raise ChecksumError(
            f"{dest}: present but does not match its checksum (expected {algo} {expected}, got "
            f"{file_digest(dest, algo)}); segbench leaves it in place: move it away to download again"
        )
    _stamp(dest).write_text(json.dumps({"checksum": checksum, "stat": _stat_key(dest)}))
    return checksum


def download_file(url: str, dest: str | os.PathLike[str], checksum: str | None = None) -> Path:
    """Download ``url`` to ``dest`` and verify it; a file already at ``dest`` is checked instead.

    A present file is never deleted or downloaded again (:func:`verify_present`).

    Raises:
        ChecksumError: the downloaded bytes (or the present file) do not match ``checksum`` (a
            partial download is removed).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        verify_present(dest, checksum)
        return dest
    checksum = checksum or _recorded_checksum(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        with _open_url(url) as response, open(part, "wb") as f:
            size = getattr(response, "headers", {}).get("Content-Length")
            total = int(size) if size else None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", disable=None
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        if checksum is None:
            checksum = _pin(part, dest, url)
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


def _unpack(archive: Path, tmp: Path) -> None:
    """Check every member of ``archive``, then extract it into ``tmp`` (with a progress bar)."""
    desc = f"extract {archive.name}"
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = _safe_members_tar(tf, archive)
            for m in tqdm(members, desc=desc, unit="file", disable=None):
                tf.extract(m, tmp, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                _check_member_name(name, archive)
            for name in tqdm(names, desc=desc, unit="file", disable=None):
                zf.extract(name, tmp)
    else:
        raise ValueError(f"{archive}: not a tar or zip archive")


def read_manifest(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict:
    """What the last extraction of ``archive`` into ``dest`` recorded: ``{"checksum", "files"}`` (or {})."""
    path = Path(dest) / _MANIFEST.format(Path(archive).name)
    try:
        rec = json.loads(path.read_text())
        return rec if isinstance(rec, dict) and isinstance(rec.get("files"), list) else {}
    except (OSError, ValueError):
        return {}


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and file_digest(a) == file_digest(b)


def _plan(tmp: Path, dest: Path, ours: set[str], archive: Path) -> list[tuple[Path, Path]]:
    """``(extracted path, target)`` pairs to create; raises :class:`ExtractClashError` on the first clash."""
    moves = []
    for item in sorted(tmp.rglob("*")):
        rel = item.relative_to(tmp).as_posix()
        target = dest / rel
        if not (target.exists() or target.is_symlink()):
            moves.append((item, target))
            continue
        if item.is_dir() and target.is_dir() and not target.is_symlink():
            continue
        if item.is_file() and target.is_file() and not target.is_symlink():
            if rel in ours:
                moves.append((item, target))
                continue
            if _same_bytes(item, target):
                continue
        kind = "folder" if item.is_dir() else "file"
        raise ExtractClashError(
            f"{archive}: member {rel!r} ({kind}) would replace {target}, which no earlier extraction of "
            "this archive wrote; move it away and run again"
        )
    return moves


def safe_extract(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, checksum: str | None = None
) -> Path:
    """Extract a tar (any compression) or zip archive into ``dest``, all or nothing, deleting nothing.

    Every member is checked before anything is written; extraction goes to a temporary folder
    inside ``dest``. Then every target is checked: a path that exists and was not written by an
    earlier extraction of the same archive (its manifest) is never replaced; an identical file
    is kept, anything else is a clash. Only when there is no clash are the files moved into
    place, and the manifest ``<dest>/.segbench-extract-<archive>.json`` records them (with
    ``checksum``, the archive's verified digest).

    Raises:
        UnsafeArchiveError: a member has an absolute path, a ``..`` component, or is a link/device.
        ExtractClashError: a member would replace a file or folder segbench did not write (names both).
        ValueError: ``archive`` is neither a tar nor a zip file.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ours = set(read_manifest(archive, dest).get("files", []))
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        _unpack(archive, tmp)
        moves = _plan(tmp, dest, ours, archive)
        written = []
        for item, target in moves:
            if item.is_dir():  # parents come first (sorted): make it, then move its files one by one
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)
            written.append(target.relative_to(dest).as_posix())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = {"archive": archive.name, "checksum": checksum, "files": sorted(ours | set(written))}
    (dest / _MANIFEST.format(archive.name)).write_text(json.dumps(manifest, indent=1))
    return dest


def fetch_resources(
    resources: Iterable[Resource], root: str | os.PathLike[str], *, download: bool = True
) -> list[Resource]:
    """Verify (or, with ``download``, fetch) and extract every resource into ``root``.

    A release file already in ``root`` is used as it is, without any network access. An archive
    whose verified digest matches the one recorded at its last extraction is not extracted
    again.

    Returns:
        The resources that are neither in ``root`` nor could be downloaded (``download=False``,
        or ``manual`` ones).
    """
    root = Path(root)
    missing = []
    for res in resources:
        path = root / res.filename
        if path.is_file():
            checksum = verify_present(path, res.checksum)
        elif download and not res.manual:
            download_file(res.url, path, res.checksum)
            checksum = json.loads(_stamp(path).read_text())["checksum"]
        else:
            missing.append(res)
            continue
        if res.extract_to is None:
            continue
        dest = root / res.extract_to
        if read_manifest(path, dest).get("checksum") == checksum:
            continue
        safe_extract(path, dest, checksum=checksum)
    return missing
