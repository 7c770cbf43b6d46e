"""Optuna study storage for ``segbench tune``: URLs, RDB storage with heartbeats, masked URLs.

The default is one SQLite file per results folder; several workers share a study through one
``--storage`` URL (e.g. PostgreSQL). See ``docs/sweeps.md``.
"""

from __future__ import annotations

import importlib.util
import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from bench.config import ConfigError, TuneConfig

_RETRY_WAIT_SECONDS = 2.0  # upper bound of the random back-off between storage attempts
_STORAGE_ATTEMPTS = 5


def default_storage(results: Path) -> str:
    """SQLite file ``<results>/optuna.db``."""
    return f"sqlite:///{(Path(results) / 'optuna.db').resolve()}"


def storage_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: plain ``postgresql://`` means psycopg 3 in
    SQLAlchemy 2.1; use psycopg2 (``psycopg2-binary``) when psycopg 3 is not installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_storage(url: str, tune: TuneConfig) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: a trial whose worker died is failed and retried.

    Optuna 4.9+ names the retry ``RetryHeartbeatStaleTrialCallback`` (passed as
    ``heartbeat_stale_trial_callback``; the older ``RetryFailedTrialCallback`` /
    ``failed_trial_callback`` are deprecated aliases). Workers that start together on a fresh
    database race to create the tables; the loser retries.
    """
    shown = _shown(url)
    try:
        from sqlalchemy.engine import make_url

        make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure is the user's URL
        raise ConfigError(
            f"--storage {shown}: not a database URL (e.g. sqlite:///results/optuna.db or "
            "postgresql://user@host:5432/db)"
        ) from None
    url = storage_url(url)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(_STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=tune.heartbeat_interval,
                    grace_period=tune.grace_period,
                    **_retry_callback(tune.max_retry),
                )
        except ImportError as e:
            raise ConfigError(f"--storage {shown}: no database driver for this URL ({e})") from None
        except Exception as e:  # noqa: BLE001 - concurrent schema creation; retried, then raised
            if attempt == _STORAGE_ATTEMPTS - 1:
                first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
                raise ConfigError(f"--storage {shown}: cannot open the study storage: {first}") from None
            time.sleep(_RETRY_WAIT_SECONDS * random.random())
    raise AssertionError("unreachable")


def _retry_callback(max_retry: int) -> dict[str, Any]:
    """The stale-trial retry callback under its Optuna >= 4.9 name, or the older one."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        return {"heartbeat_stale_trial_callback": retry(max_retry=max_retry)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)}


def _shown(url: str) -> str:
    try:
        return public_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def public_url(url: str) -> str:
    """The storage URL with any password masked (it goes into records)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
