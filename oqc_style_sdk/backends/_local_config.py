"""The local simulator's settings and run configs: their limits, checks and normal form."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any, Final, SupportsIndex

from ..exceptions import JobValidationError
from ._local_limits import AER_METHODS, DEVICES, gpu_build_installed

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_SHOTS",
    "MAX_PROGRAM_BYTES",
    "MAX_SEED",
    "MAX_SHOTS",
    "as_duration",
    "as_int",
    "as_seed",
    "check_size",
    "normalise_config",
]

#: The largest program accepted, in UTF-8 bytes.
MAX_PROGRAM_BYTES: Final = 1_000_000
#: Shots per run: 1 to this many.
MAX_SHOTS: Final = 1_000_000
#: Shots when the config names none.
DEFAULT_SHOTS: Final = 1000
#: Seeds are 0 to this (the simulators take a signed 64-bit seed).
MAX_SEED: Final = 2**63 - 1

#: The keys a run's config may have.
CONFIG_KEYS: Final = ("shots", "seed", "min_duration_s", "method", "device")


def as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (bool is not), else None."""
    if type(value) is int:  # the common case, without the (slow) protocol check below
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        return None
    return operator.index(value)


def as_duration(value: object) -> float | None:
    """``value`` as a finite non-negative float if it is one (bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    duration = float(value)
    return duration if math.isfinite(duration) and duration >= 0 else None


def as_seed(value: object) -> tuple[bool, int | None]:
    """(ok, seed) for a seed setting: None or an int in 0..MAX_SEED."""
    if value is None:
        return True, None
    seed = as_int(value)
    if seed is None or not 0 <= seed <= MAX_SEED:
        return False, None
    return True, seed


def check_size(program: str) -> None:
    """Refuse a program over :data:`MAX_PROGRAM_BYTES` of UTF-8 (or not valid Unicode text)."""
    limit = MAX_PROGRAM_BYTES
    if len(program) * 4 <= limit:  # a character is at most 4 bytes: surely small enough
        return
    try:
        size = len(program) if len(program) > limit else len(program.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise JobValidationError(f"the program is not valid Unicode text: {exc}") from None
    if size > limit:
        raise JobValidationError(
            f"the program is over {limit:,} bytes of UTF-8 (MAX_PROGRAM_BYTES), "
            "the most the local simulator accepts"
        )


def normalise_config(config: object, engine: str) -> dict[str, Any]:
    """A run's config checked (JobValidationError) and normalised: ``shots`` always set."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise JobValidationError(f"config must be a mapping (dict), got {type(config).__name__}")
    unknown = [key for key in config if key not in CONFIG_KEYS]
    if unknown:
        raise JobValidationError(
            f"unknown config key(s) {', '.join(repr(k) for k in unknown)} for the local "
            f"simulator; allowed keys: {', '.join(CONFIG_KEYS)}"
        )
    out: dict[str, Any] = {}
    raw_shots = config.get("shots", DEFAULT_SHOTS)
    shots = as_int(raw_shots)
    if shots is None or not 1 <= shots <= MAX_SHOTS:
        raise JobValidationError(f"config 'shots' must be an int from 1 to {MAX_SHOTS:,}, got {raw_shots!r}")
    out["shots"] = shots
    if "seed" in config:
        seed_ok, seed = as_seed(config["seed"])
        if not seed_ok:
            raise JobValidationError(
                f"config 'seed' must be None or an int in 0..2**63-1, got {config['seed']!r}"
            )
        out["seed"] = seed
    if "min_duration_s" in config:
        duration = as_duration(config["min_duration_s"])
        if duration is None:
            raise JobValidationError(
                "config 'min_duration_s' must be a finite number >= 0 (seconds), "
                f"got {config['min_duration_s']!r}"
            )
        out["min_duration_s"] = duration
    for key, allowed in (("method", AER_METHODS), ("device", DEVICES)):
        if key not in config:
            continue
        value = config[key]
        if value not in allowed:
            raise JobValidationError(
                f"config {key!r} must be one of {', '.join(allowed)} (qiskit-aer's), got {value!r}"
            )
        if engine != "aer":
            raise JobValidationError(f"config {key!r} needs the aer simulator (simulator='aer')")
        out[key] = value
    if out.get("device") == "GPU" and not gpu_build_installed():
        raise JobValidationError(
            "config device='GPU' needs a GPU build of qiskit-aer (pip install qiskit-aer-gpu); "
            "the qiskit-aer installed here simulates on the CPU only"
        )
    return out
