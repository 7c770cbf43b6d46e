"""Per-case metadata (subgroups): ``case_metadata.csv`` in a dataset's root.

The file (format in ``docs/metadata.md``) is a comma-separated table in UTF-8 with one header line:

- the **first column is named** ``case_id`` (exactly; a UTF-8 byte-order mark and spaces around a
  header name are ignored); every other column is a metadata key (``condition``, ``sex``,
  ``scanner`` ...), named once and not empty;
- one line per case: its case id as the records name it, then one value per key. Values are kept as
  strings (spaces around them removed); an empty cell means "not known" and leaves that key out for
  that case. Blank lines are skipped.

A bad file is a :class:`MetadataFileError` (a :class:`~bench.errors.UserError`, one line naming the
file and the line or column): a first column that is not ``case_id``, an empty or repeated column
name, a line with another number of fields than the header, an empty or repeated case id.

Which cases are read: the rows of the case ids asked for. Rows of other case ids are not an error,
because the file usually lists every case of the dataset and the leaderboard asks for the test
cases only; a caller that knows every case id of the dataset passes it as ``dataset_cases``, and
rows of case ids outside it (a typo, a case of another dataset) are then named in an
:class:`UnknownCaseWarning`. A case asked for without a row has no metadata (it is left out of the
result; ``segbench leaderboard --by`` names such cases under its tables).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

from bench.errors import UserError

METADATA_FILE = "case_metadata.csv"
"""The file name of a dataset's per-case metadata, in its root."""
CASE_ID = "case_id"
"""The name the first column must have."""
_SHOWN = 5  # unknown case ids named in a warning


class MetadataFileError(UserError):
    """A ``case_metadata.csv`` that cannot be read as the format says (names the file and line)."""


class UnknownCaseWarning(UserWarning):
    """Rows of ``case_metadata.csv`` whose case ids are not cases of the dataset (named)."""


def read_case_metadata(
    root: str | Path,
    case_ids: Sequence[str],
    *,
    dataset_cases: Collection[str] | None = None,
) -> dict[str, dict[str, str]]:
    """``case id -> {key: value}`` from ``root/case_metadata.csv`` for ``case_ids``.

    Args:
        root: the dataset's root folder (for ``nnunet_raw``: the folder with ``dataset.json``).
        case_ids: the cases wanted (e.g. a table's test cases).
        dataset_cases: every case id of the dataset, when known: rows of other ids are warned about.

    Returns:
        The cases of ``case_ids`` that have a row, each with its non-empty values; empty when the
        file does not exist.

    Raises:
        MetadataFileError: the file breaks the format (one line: file, line, what is wrong).

    Warns:
        UnknownCaseWarning: with ``dataset_cases``, naming the rows' case ids that are not in it.
    """
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return {}
    rows = parse_case_metadata(path)
    if dataset_cases is not None:
        known = set(dataset_cases)
        unknown = [c for c in rows if c not in known]
        if unknown:
            shown = ", ".join(unknown[:_SHOWN]) + (", …" if len(unknown) > _SHOWN else "")
            warnings.warn(
                f"{path}: {len(unknown)} case id(s) are not cases of the dataset: {shown}",
                UnknownCaseWarning,
                stacklevel=2,
            )
    wanted = set(case_ids)
    return {c: values for c, values in rows.items() if c in wanted}


def parse_case_metadata(path: Path) -> dict[str, dict[str, str]]:
    """Every row of one ``case_metadata.csv``: ``case id -> {key: value}`` (empty values left out).

    Raises:
        MetadataFileError: see :func:`read_case_metadata`.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise MetadataFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise MetadataFileError(f"{path}: unreadable ({e.strerror or e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise MetadataFileError(
                f"{path}: line 1: no header; the first line must be `{CASE_ID},<key>,...`"
            )
        keys = _header(path, header)
        out: dict[str, dict[str, str]] = {}
        first_line: dict[str, int] = {}
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(keys) + 1:
                raise MetadataFileError(
                    f"{path}: line {line}: {len(fields)} field(s), the header has {len(keys) + 1}"
                )
            case = fields[0].strip()
            if not case:
                raise MetadataFileError(f"{path}: line {line}: empty {CASE_ID}")
            if case in out:
                raise MetadataFileError(
                    f"{path}: line {line}: case id {case!r} repeats line {first_line[case]}"
                )
            first_line[case] = line
            out[case] = {k: v.strip() for k, v in zip(keys, fields[1:]) if v.strip()}
    except csv.Error as e:
        raise MetadataFileError(f"{path}: line {reader.line_num}: {e}") from None
    return out


def _header(path: Path, header: list[str]) -> list[str]:
    """The metadata keys of a header line (its columns after ``case_id``)."""
    names = [h.strip() for h in header]
    if names[0] != CASE_ID:
        raise MetadataFileError(
            f"{path}: line 1, column 1: the first column must be named {CASE_ID!r}, found {names[0]!r}"
        )
    seen: set[str] = set()
    for col, name in enumerate(names[1:], start=2):
        if not name:
            raise MetadataFileError(f"{path}: line 1, column {col}: empty column name")
        if name in seen or name == CASE_ID:
            raise MetadataFileError(f"{path}: line 1, column {col}: column {name!r} is named twice")
        seen.add(name)
    return names[1:]
