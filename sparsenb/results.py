"""Run records: one JSON per finished run under <results root>/<notebook>/<run_id>.json, written
atomically (temp file + rename), so a killed sweep never leaves half a record; `load()` gives a tidy
DataFrame of all of them. `root_of(cfg)` is the one answer to "where do results live" (the profile's
`results_root`, under the outputs root): the notebooks write there, the sweep checks there, the
summary reads there.

    rec = results.record(spec, {"best": .71, "final": .70, "curve": [...]}, started=t0)  # a run spec
    results.done(spec)                        # its records are complete
    df = results.load(root=results.root_of(cfg)) # one row per run
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import evidence, files, paths

if TYPE_CHECKING:
    from .specs import Spec

KEY_FIELDS = ("profile", "arch", "method", "sparsity", "dataset", "seed", "finetune")


def run_id(config: dict) -> str:
    """A stable id of a run: sha1 of its resolved config (sorted JSON), 12 hex digits."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


SEED_KEYS = ("seed", "upstream_seed")


INPUT_KEYS = ("inputs",)  # digests of the data and checkpoint a run read: in its run id, not its cell


def cell_hash(config: dict) -> str:
    """The hash of the configuration that defines a run's cell: its config without the seeds (the
    records of one cell differ only in those; 07_summary pools exactly the records that share it)
    and without the digests of its inputs (so the summary needs neither the data nor the checkpoints)."""
    return run_id({k: v for k, v in config.items() if k not in SEED_KEYS + INPUT_KEYS})


def versions() -> dict:
    import numpy
    import torch

    from . import __version__

    out = {
        "sparsenb": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    from .engine import deepsparse_version  # its own environment, read from the package metadata

    return {**out, "deepsparse": deepsparse_version()} if deepsparse_version() else out


def root_of(cfg=None) -> Path:
    """Where the records of a configuration live: its `results_root` (resolved under the outputs
    root); without one, the mini profile's."""
    if cfg is None:
        from . import config

        cfg = config.load("mini")
    return Path(cfg["results_root"])


def path_of(notebook: str, rid: str, root: str | os.PathLike | None = None) -> Path:
    return Path(root or root_of()) / notebook / f"{rid}.json"


def path(spec: Spec) -> Path:
    """Where the record of a run spec goes (a spec writing several: `spec.records()`, one each)."""
    return path_of(spec.notebook, spec.run_id, root_of(spec.cfg))


def exists(notebook: str, config: dict, root=None) -> bool:
    """Whether the run has a complete record (one that parses and is this run's)."""
    return read(path_of(notebook, run_id(config), root)) is not None


def done(spec: Spec) -> bool:
    """Whether every record of a run spec is complete and made from the upstream model the manifest
    vouches for today (what the sweep skips; a record whose model changed is run again)."""
    return all((rec := read(path(r))) is not None and not stale(r, rec) for r in spec.records())


def stale(spec: Spec, rec: dict) -> bool:
    """Whether `rec` names an upstream model (`upstream_sha256`) other than the one its profile's
    manifest now lists for the spec's (method, sparsity, upstream seed)."""
    made = rec.get("upstream_sha256")
    if not made or not hasattr(spec, "method"):
        return False
    from . import checkpoints

    row = checkpoints.entry(spec.cfg, spec.method, spec.sparsity, getattr(spec, "upstream_seed", 0))
    return row is not None and row["sha256"] != made


RECORD_KEYS = ("notebook", "run_id", "config")


def _checked(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """(the record, None) when `path` holds a usable record, else (None, why): unreadable, not JSON,
    or JSON that is not a record (a record holds notebook, run_id and config, and its run_id names
    its file). The file is read and parsed once."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"not readable as JSON ({type(e).__name__})"
    if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
        return None, f"JSON but not a run record (a record has {', '.join(RECORD_KEYS)})"
    if rec["run_id"] != path.stem or run_id(rec["config"]) != path.stem:
        return None, "a record of another run (its run_id does not match its file name)"
    return rec, None


def problem(path: str | os.PathLike) -> str | None:
    """Why the file is not a usable record (None when it is); see `_checked`."""
    return _checked(path)[1]


def read(path: str | os.PathLike) -> dict | None:
    """The record in `path`, or None when there is no usable one (see `_checked`)."""
    return _checked(path)[0]


def record(spec: Spec, metrics: dict, started: float | None = None) -> dict:
    """Write the record of one finished run of `spec` (its identity is the record's `config`, its
    hash the run id) under `root_of(spec.cfg)`; `metrics` what it measured, and `ran_with` where it
    ran (backend, device, loader workers: machine facts, never in the id). Returns the record."""
    cfg = spec.cfg or {}
    where = {
        "backend": cfg.get("backend"),
        "device": str(spec.device) if spec.cfg else None,
        "num_workers": cfg.get("num_workers"),
    }
    return write(spec.notebook, spec.config(), {**metrics, "ran_with": where}, started, root_of(spec.cfg))


def write(notebook: str, config: dict, metrics: dict, started: float | None = None, root=None) -> dict:
    """`record` from its parts: `config` the identity of the run, written under `root`."""
    now = time.time()
    metrics = dict(metrics)
    preds = metrics.pop("predictions", None)
    clash = [k for k in KEY_FIELDS if k in metrics and k in config and metrics[k] != config[k]]
    if clash:
        raise ValueError(f"metrics would overwrite the run's {clash}: rename them (e.g. 'achieved_{clash[0]}')")
    rec = {
        "notebook": notebook,
        "run_id": run_id(config),
        "cell_hash": cell_hash(config),
        **metrics,
        **{k: config.get(k) for k in KEY_FIELDS if k in config},
        "config": config,
        "wall_seconds": round(now - started, 2) if started else None,
        "start": dt.datetime.fromtimestamp(started or now).isoformat(timespec="seconds"),
        "end": dt.datetime.fromtimestamp(now).isoformat(timespec="seconds"),
        "versions": versions(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "isa": _isa(),  # CPU runs reproduce bit for bit on the same instruction set (devices.isa)
    }
    where = path_of(notebook, rec["run_id"], root)
    if where.exists() and evidence.committed(where) and not evidence.replacing_allowed():
        where = _rerun_of_committed(where, metrics, notebook)
        if where is None:
            return json.loads(path_of(notebook, rec["run_id"], root).read_text())
    if preds:  # written first: a record never names predictions that are not there
        rec["predictions"] = save_predictions(predictions_path(where), preds)
    files.write_text(where, json.dumps(rec, indent=1, default=float))
    return rec


def _isa() -> str:
    from . import devices

    return devices.isa()


def _rerun_of_committed(where: Path, metrics: dict, notebook: str) -> Path | None:
    """A run whose id has a committed record: None when every number it measured equals the record's
    (one line: "reproduced"; the committed record stays), else where the new record goes instead,
    outputs/cache/reruns/ (one line: "differs by ...")."""
    old = json.loads(where.read_text())
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "seconds" not in k}
    diff = {k: v - old[k] for k, v in numbers.items() if isinstance(old.get(k), (int, float)) and v != old[k]}
    rid = where.stem
    if not diff:
        print(f"run {rid}: reproduced its committed record {where.name} (every number equal); kept as it was")
        return None
    shown = ", ".join(f"{k} {d:+.4g}" for k, d in list(diff.items())[:4])
    out = paths.outputs() / "cache" / "reruns" / notebook / where.name
    made = old.get("isa", "avx512 (the study's machines; records before 2026-12 do not say)")
    why = f" (the record was made on {made}, this run on {_isa()}: CPU kernels round differently)"
    why = why if made != _isa() else ""
    print(f"run {rid}: differs from its committed record by {shown}{why}; the committed one kept, this one in {out}")
    return out


def predictions_path(record_path: str | os.PathLike) -> Path:
    """<run_id>.predictions.npz beside the run's record."""
    return Path(record_path).with_suffix(".predictions.npz")


def save_predictions(path: Path, preds: dict) -> dict:
    """Class probabilities (float16) and labels per split, compressed; returns what the record keeps
    of them (file name, sha256, splits, shape)."""
    import numpy as np

    arrays = {}
    for split, d in preds.items():
        arrays[f"{split}_probs"] = np.asarray(d["probs"], dtype=np.float16)
        arrays[f"{split}_labels"] = np.asarray(d["labels"], dtype=np.int64)
    with files.atomic(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return {
        "file": path.name,
        "sha256": files.sha256(path),
        "splits": sorted(preds),
        "shape": {s: list(arrays[f"{s}_probs"].shape) for s in preds},
        "dtype": "float16",
    }


class PredictionsError(ValueError):
    """A record's predictions are missing or do not match their hash."""


def predictions(record: dict, root=None) -> dict[str, dict] | None:
    """split -> {"labels", "probs"} of a run, checked against the hash in its record; None for a
    record made before runs kept their predictions. A missing or changed file is an error naming it."""
    import numpy as np

    meta = record.get("predictions")
    if not isinstance(meta, dict):
        return None
    path = path_of(record["notebook"], record["run_id"], root).with_name(meta["file"])
    if not path.exists() or files.sha256(path) != meta["sha256"]:
        raise PredictionsError(
            f"{path}: {'missing' if not path.exists() else 'does not match its sha256 in the record'}; "
            f"re-run the run (delete its record {path.with_name(record['run_id'] + '.json')} and run the sweep again)"
        )
    with np.load(path) as z:
        return {s: {"labels": z[f"{s}_labels"], "probs": z[f"{s}_probs"]} for s in meta["splits"]}


@dataclass(frozen=True)
class Records:
    """The records under a root (one row per run) and the files there that are not records."""

    frame: pd.DataFrame
    skipped: list = field(default_factory=list)  # [{file, reason}]


def scan(notebook: str | None = None, root=None) -> Records:
    """All records (of one notebook, or all) and the files skipped; nested fields stay as Python
    objects (curve, config, versions)."""
    base = Path(root or root_of())
    pattern = f"{notebook}/*.json" if notebook else "*/*.json"
    rows, skipped = [], []
    for p in sorted(p for p in base.glob(pattern) if not files.unfinished(p)):
        rec, why = _checked(p)
        if why:
            skipped.append({"file": str(p), "reason": why})
            continue
        rows.append(rec)
    if skipped:
        warnings.warn(
            f"{len(skipped)} files under {base} are not run records and were skipped: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5]),
            stacklevel=3,
        )
    return Records(pd.DataFrame(rows), skipped)


def load(notebook: str | None = None, root=None) -> pd.DataFrame:
    """All records (of one notebook, or all) as a DataFrame, one row per run (`scan`: and the
    files that are not records)."""
    return scan(notebook, root).frame
