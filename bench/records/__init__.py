"""Records: the one owner of run ids, config hashes, the record type, record and prediction files,
run state, supersede and row identity.

- :mod:`bench.records.record`: :class:`Record`, one constructor per kind, typed fields for readers;
- :mod:`bench.records.identity`: ``hash_config`` (a run id's hash), ``row_key`` (a leaderboard row),
  the ids of evaluation and ensemble records, :func:`digest`;
- :mod:`bench.records.store`: the atomic writer, reading and scanning a results folder, run state,
  claims;
- :mod:`bench.records.predictions`: the per-case ``.npz`` prediction files;
- :mod:`bench.records.supersede`: moving a replaced record (and its files) aside;
- :mod:`bench.records.provenance`: git state, package versions and the device a run used.
"""

from bench.records.identity import (
    HASH_EXCLUDED,
    ROW_EXCLUDED,
    digest,
    ensemble_id,
    evaluation_id,
    hash_config,
    row_key,
    row_tag,
)
from bench.records.predictions import (
    prediction_arrays,
    prediction_ref,
    read_prediction,
    write_prediction,
)
from bench.records.record import RECORD_KINDS, RECORD_SCHEMA, Record, now, worker_info
from bench.records.store import (
    DEFAULT_RESULTS,
    Claim,
    claim,
    clean_stale_temp,
    is_done,
    leaderboard_path,
    load_record,
    load_records,
    read_record,
    record_path,
    run_state,
    scan_records,
    write_atomic,
    write_json_atomic,
    write_record,
    write_text_atomic,
)
from bench.records.supersede import supersede

__all__ = [
    "DEFAULT_RESULTS",
    "HASH_EXCLUDED",
    "RECORD_KINDS",
    "RECORD_SCHEMA",
    "ROW_EXCLUDED",
    "Claim",
    "Record",
    "claim",
    "clean_stale_temp",
    "digest",
    "ensemble_id",
    "evaluation_id",
    "hash_config",
    "is_done",
    "leaderboard_path",
    "load_record",
    "load_records",
    "now",
    "prediction_arrays",
    "prediction_ref",
    "read_prediction",
    "read_record",
    "record_path",
    "row_key",
    "row_tag",
    "run_state",
    "scan_records",
    "supersede",
    "worker_info",
    "write_atomic",
    "write_json_atomic",
    "write_prediction",
    "write_record",
    "write_text_atomic",
]
