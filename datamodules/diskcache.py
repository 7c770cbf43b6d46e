"""The disk cache of loaded cases: each case is decoded once, written as ``.npy`` files, and read back
as memory-mapped arrays, so a DataModule does not hold its dataset in RAM (docs/cache.md).

Layout: ``<cache_dir>/cases/<key>/`` holds ``image.npy`` (as ``load_case`` returned it, float32),
``label.npy`` (uint8, or uint16 / the original dtype when the values need it), ``fov.npy`` (bool,
when the case has one), ``foreground.npy`` (flat C-order indices of ``label > 0``, what foreground
oversampling draws from), ``extra_<i>.npy`` for every array in ``Case.extras`` and ``meta.json``
(case id, spacing, dtypes, every other extra as JSON), written last.

The key (:func:`case_key`) hashes the DataModule's settings that change what ``load_case`` returns
(:meth:`~datamodules.base.SegDataModule.cache_settings`) with the case id, its index entry and the
path, size and modification time of each of its source files.

An entry appears at once or not at all: it is written into a temporary folder next to it
(``.partial-<key>-*``) and renamed into place. Two processes filling one cache may both decode a
case; the first rename wins and the other discards its copy. A killed writer leaves only a
``.partial-*`` folder, never read (``segbench cache --clear`` removes it).

Extras: numpy arrays get their own ``.npy`` (integer ones stored in the smallest unsigned dtype that
holds them, read back in their own dtype); numpy scalars, ``None``, ``bool``, ``int``, ``float``,
``str`` and lists, tuples and dicts of these (small arrays included) go to ``meta.json`` and come
back with their types. Anything else raises :class:`DiskCacheError` naming the case and the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from datamodules.cases import Case

CACHE_ENV = "SEGBENCH_CACHE"
NO_DISK_CACHE_ENV = "SEGBENCH_NO_DISK_CACHE"
"""Set to ``1`` to keep every DataModule's cases in RAM (the cache is neither read nor written)."""
CASES = "cases"
META = "meta.json"
PARTIAL = ".partial-"
FORMAT_VERSION = 1
OPEN_CASES = 4
"""Cases whose memory maps :class:`CachedCases` keeps open per process (their touched pages count
in the process's RSS; more open cases only saves re-opening files)."""


class DiskCacheError(UserError):
    """A case holds an extra the disk cache cannot store (names the case and the key)."""


def default_cache_dir() -> Path:
    """``$SEGBENCH_CACHE``, else ``~/.cache/segbench`` (split files and the case cache live there)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "segbench")


def disk_cache_disabled() -> bool:
    """True when ``$SEGBENCH_NO_DISK_CACHE`` is set to ``1`` / ``true`` / ``yes``."""
    return os.environ.get(NO_DISK_CACHE_ENV, "").strip().lower() in ("1", "true", "yes")


def cases_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache_dir>/cases`` (default :func:`default_cache_dir`)."""
    return Path(cache_dir or default_cache_dir()) / CASES


# ---- the key --------------------------------------------------------------------------------


def canonical(v: Any) -> Any:
    """A JSON form of a setting that is the same in every process: paths and strings as text,
    sequences as lists, mappings with text keys, arrays by digest, functions and classes by name,
    other objects by ``repr`` without memory addresses."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return {
            "array": v.dtype.str,
            "shape": list(v.shape),
            "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
        }
    if isinstance(v, Mapping):
        return {str(k): canonical(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (set, frozenset)):
        return sorted((canonical(x) for x in v), key=repr)
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: canonical(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return {"dataclass": type(v).__qualname__, **fields}
    if callable(v) and hasattr(v, "__qualname__"):
        return f"{getattr(v, '__module__', '')}.{v.__qualname__}"
    return _ADDRESS.sub("", repr(v))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def digest(value: Any) -> str:
    """SHA-256 (hex) of :func:`canonical` ``(value)``."""
    text = json.dumps(canonical(value), sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def module_digest(module: str) -> str:
    """SHA-256 of a module's source file (its name when it has no readable file)."""
    path = getattr(sys.modules.get(module), "__file__", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else module
    except OSError:
        return module


@functools.lru_cache(maxsize=1)
def package_digest() -> str:
    """SHA-256 of every ``.py`` file of the ``datamodules`` package: the code that decodes a case
    is part of the key, so a changed reader or a new segbench version never reads an older decoding."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.relative_to(Path(__file__).parent).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def source_files(info: Any) -> list[Path]:
    """Every existing file named in a case's index entry (``CaseRef.info``, searched recursively)."""
    found: list[Path] = []
    if isinstance(info, Mapping):
        info = list(info.values())
    if isinstance(info, (list, tuple)):
        for x in info:
            found += source_files(x)
    elif isinstance(info, (str, os.PathLike)) and os.path.isfile(info):
        found.append(Path(info))
    return found


def file_stamps(files: Sequence[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each file: a changed or replaced file changes the key."""
    stamps = []
    for f in files:
        st = os.stat(f)
        stamps.append([os.fspath(f), st.st_size, st.st_mtime_ns])
    return stamps


def case_key(name: str, settings_digest: str, case_id: str, source: Any) -> str:
    """Entry name ``<name>-<case id>-<24 hex>``: the readable part for people, the digest of
    ``settings_digest``, the case id and ``source`` (index entry, file stamps) for the cache."""
    h = digest({"format": FORMAT_VERSION, "settings": settings_digest, "case": case_id, "source": source})
    readable = _UNSAFE.sub("_", f"{name}-{case_id}")[:80]
    return f"{readable}-{h[:24]}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# ---- JSON that keeps its types ------------------------------------------------------------


def _encode(v: Any, where: str) -> Any:
    """``v`` as JSON that :func:`_decode` turns back into an equal value of the same type."""
    if v is None or isinstance(v, (bool, str)) or type(v) in (int, float):
        return v
    if isinstance(v, np.generic):
        return {"__scalar__": [v.dtype.str, v.item()]}
    if isinstance(v, np.ndarray) and v.dtype != object:
        return {"__ndarray__": [v.dtype.str, list(v.shape), v.ravel().tolist()]}
    if isinstance(v, list):
        return [_encode(x, where) for x in v]
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, where) for x in v]}
    if isinstance(v, dict):
        if all(type(k) is str and not k.startswith("__") for k in v):
            return {k: _encode(x, where) for k, x in v.items()}
        return {"__dict__": [[_encode(k, where), _encode(x, where)] for k, x in v.items()]}
    raise DiskCacheError(
        f"{where}: a {type(v).__name__} cannot be stored in the disk cache (use a numpy array, a number, "
        "a string, or lists / tuples / dicts of them; or set SEGBENCH_NO_DISK_CACHE=1)"
    )


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__scalar__" in v:
        dtype, value = v["__scalar__"]
        return np.dtype(dtype).type(value)
    if "__ndarray__" in v:
        dtype, shape, values = v["__ndarray__"]
        return np.array(values, dtype=np.dtype(dtype)).reshape(shape)
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__dict__" in v:
        return {_decode(k): _decode(x) for k, x in v["__dict__"]}
    return {k: _decode(x) for k, x in v.items()}


# ---- writing and reading one entry ----------------------------------------------------------


def _storage_dtype(arr: np.ndarray) -> np.dtype:
    """uint8 / uint16 for integer arrays whose values fit (labels), else the array's own dtype."""
    if arr.dtype.kind not in "iu" or arr.size == 0:
        return arr.dtype
    lo, hi = int(arr.min()), int(arr.max())
    for small in (np.uint8, np.uint16):
        if lo >= 0 and hi <= np.iinfo(small).max:
            return np.dtype(small)
    return arr.dtype


def _save(folder: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
    stored = _storage_dtype(arr)
    np.save(folder / f"{name}.npy", np.asarray(arr, dtype=stored), allow_pickle=False)
    return {"file": f"{name}.npy", "dtype": arr.dtype.str, "stored": stored.str}


def write_entry(folder: Path, case: Case) -> None:
    """Write ``case`` into ``folder`` (an existing, empty folder); ``meta.json`` last.

    Raises:
        DiskCacheError: an extra that is neither an array nor JSON-like (names the case and key).
    """
    label = np.asarray(case.label)
    meta: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "case_id": case.case_id,
        "spacing": None if case.spacing is None else [float(s) for s in case.spacing],
        "image": _save(folder, "image", np.asarray(case.image)),
        "label": _save(folder, "label", label),
        "fov": None if case.fov is None else _save(folder, "fov", np.asarray(case.fov)),
        "foreground": _save(folder, "foreground", np.flatnonzero(label > 0).astype(_index_dtype(label))),
        "extras": {},
    }
    for i, (key, value) in enumerate(case.extras.items()):
        if value is case.label:
            meta["extras"][key] = {"same_as": "label"}
        elif isinstance(value, np.ndarray) and value.dtype != object and value.ndim > 0:
            meta["extras"][key] = _save(folder, f"extra_{i}", value)
        else:
            meta["extras"][key] = {"json": _encode(value, f"case {case.case_id}: extras[{key!r}]")}
    (folder / META).write_text(json.dumps(meta))


def _index_dtype(label: np.ndarray) -> type:
    return np.uint32 if label.size < 2**32 else np.int64


def _load(folder: Path, spec: dict[str, Any], mmap_mode: str, restore: bool) -> np.ndarray:
    arr = np.load(folder / spec["file"], mmap_mode=mmap_mode, allow_pickle=False)
    if restore and spec["stored"] != spec["dtype"]:
        return np.asarray(arr, dtype=np.dtype(spec["dtype"]))
    return arr


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of an entry (``FileNotFoundError`` when the entry is not complete)."""
    return json.loads((folder / META).read_text())


def read_entry(folder: Path, *, stored: bool = False) -> Case:
    """The case of entry ``folder``.

    Args:
        folder: ``<cache_dir>/cases/<key>``.
        stored: False: arrays as ``load_case`` returned them (``label`` int64 and any integer array
            a copy in its own dtype; image, FOV and float extras copy-on-write memory maps, writable
            without touching the file). True: every array a read-only memory map as stored
            (``label`` uint8 / uint16): what training crops read.

    Returns:
        ``Case`` with ``image (C, *spatial)``, ``label (*spatial)``, ``fov (*spatial)`` or None,
        ``spacing`` and ``extras``.
    """
    meta = read_meta(folder)
    mode, restore = ("r", False) if stored else ("c", True)
    label = _load(folder, meta["label"], mode, restore)
    extras: dict[str, Any] = {}
    for key, spec in meta["extras"].items():
        if "same_as" in spec:
            extras[key] = label
        elif "file" in spec:
            extras[key] = _load(folder, spec, mode, restore)
        else:
            extras[key] = _decode(spec["json"])
    return Case(
        meta["case_id"],
        _load(folder, meta["image"], mode, restore),
        label,
        None if meta["fov"] is None else _load(folder, meta["fov"], mode, restore),
        None if meta["spacing"] is None else tuple(meta["spacing"]),
        extras,
    )


def read_foreground(folder: Path) -> np.ndarray:
    """``(n,)`` flat C-order indices of the foreground voxels (``label > 0``), a read-only memory map."""
    return np.load(folder / "foreground.npy", mmap_mode="r", allow_pickle=False)


# ---- the store ----------------------------------------------------------------------------


class CaseStore:
    """The entries under ``<cache_dir>/cases``: :meth:`find` and :meth:`put` by key.

    ``written`` and ``lost_races`` count, for this process, the entries it renamed into place and
    the ones another process completed first (its own copy then discarded).
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.root = cases_folder(cache_dir)
        self.written = 0
        self.lost_races = 0

    def find(self, key: str) -> Path | None:
        """The complete entry of ``key``, or None."""
        folder = self.root / key
        return folder if (folder / META).is_file() else None

    def put(self, key: str, case: Case) -> Path:
        """Write ``case`` as the entry of ``key`` (atomically: temp folder + rename) and return it.

        When another process completes the same entry first, its entry is kept and this copy is
        discarded; an error while writing removes the temp folder and is raised.
        """
        done = self.find(key)
        if done is not None:
            return done
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{key}-", dir=self.root))
        try:
            write_entry(tmp, case)
            os.rename(tmp, self.root / key)
        except OSError:
            if self.find(key) is None:
                raise
            self.lost_races += 1  # another process renamed its copy first
        else:
            self.written += 1
            return self.root / key
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.root / key


class CachedCases(Sequence[Case]):
    """The training cases as entries of the cache, opened on demand (what :class:`PatchSampler` reads).

    Item ``k`` is :func:`read_entry` ``(folders[k], stored=True)``: memory maps, labels as stored.
    At most :data:`OPEN_CASES` cases stay open per process; pickling (DataLoader workers, fork or
    spawn) carries the folder paths only.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = [Path(f) for f in folders]
        self._open: OrderedDict[int, tuple[Case, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.folders)

    def _get(self, k: int) -> tuple[Case, np.ndarray]:
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        opened = (read_entry(self.folders[k], stored=True), read_foreground(self.folders[k]))
        self._open[k] = opened
        while len(self._open) > OPEN_CASES:
            self._open.popitem(last=False)
        return opened

    def __getitem__(self, k: int) -> Case:  # type: ignore[override]
        return self._get(range(len(self))[k])[0]

    def foreground(self, k: int) -> np.ndarray:
        """``(n,)`` flat indices of case ``k``'s foreground voxels."""
        return self._get(range(len(self))[k])[1]

    def __iter__(self) -> Iterator[Case]:
        return (self[k] for k in range(len(self)))

    def __getstate__(self) -> dict[str, Any]:
        return {"folders": self.folders}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.folders = list(state["folders"])
        self._open = OrderedDict()


# ---- what `segbench cache` shows and clears -----------------------------------------------


@dataclass(frozen=True)
class CacheUsage:
    """The case cache under one cache folder: complete entries, leftovers of killed writers, bytes."""

    folder: Path
    entries: int
    partial: int
    bytes: int


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += (Path(dirpath) / name).lstat().st_size
    return total


def cache_usage(cache_dir: str | os.PathLike[str] | None = None) -> CacheUsage:
    """Entries, partial folders and bytes of ``<cache_dir>/cases`` (0 when it does not exist)."""
    root = cases_folder(cache_dir)
    if not root.is_dir():
        return CacheUsage(root, 0, 0, 0)
    names = [p for p in root.iterdir() if p.is_dir()]
    partial = sum(p.name.startswith(PARTIAL) for p in names)
    entries = sum((p / META).is_file() for p in names if not p.name.startswith(PARTIAL))
    return CacheUsage(root, entries, partial, _size(root))


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> CacheUsage:
    """Delete ``<cache_dir>/cases`` (never the split files next to it); returns what it held."""
    usage = cache_usage(cache_dir)
    if usage.folder.is_dir():
        shutil.rmtree(usage.folder)
    return usage


def format_bytes(n: int) -> str:
    """``n`` bytes as ``"1.5 GB"`` / ``"12.0 MB"`` / ``"3.0 kB"`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
