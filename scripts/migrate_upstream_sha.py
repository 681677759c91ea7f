"""Give every committed record the sha256 of the upstream model it was made from (issue 37).

Records made before 2026-12 name their upstream model by its recipe key only (`upstream_recipe` in
their config: in the run id). This adds `upstream_sha256` -- metadata, outside the config, so every
run id stays as it is -- from the manifest row of (method, sparsity, upstream seed) whose recipe is
the record's; a record whose recipe the manifest no longer has is left alone and listed.

    SPARSENB_REPLACE_EVIDENCE=1 python scripts/migrate_upstream_sha.py [results_root] [--profile mini]

Idempotent: a record that names its model already is not touched. Tested in tests/test_evidence.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sparsenb import checkpoints, config, files, results


def migrate(results_root: Path, cfg) -> dict:
    """Add `upstream_sha256` to each record under `results_root` that lacks it; returns the counts
    {"added", "had", "no_model", "other"} and the files left alone under "left"."""
    man = checkpoints.read_manifest(cfg)
    out = {"added": 0, "had": 0, "no_model": 0, "other": 0, "left": []}
    for path in sorted(Path(results_root).glob("*/*.json")):
        rec = results.read(path)
        c = (rec or {}).get("config", {})
        if rec is None or not c.get("upstream_recipe"):
            out["other"] += 1
            continue
        if rec.get("upstream_sha256"):
            out["had"] += 1
            continue
        hit = man[
            (man.method == c["method"])
            & ((man.sparsity - float(c["sparsity"])).abs() < 1e-9)
            & (man.seed == int(c.get("upstream_seed", 0)))
            & (man.recipe == c["upstream_recipe"])
        ]
        if hit.empty:
            out["no_model"] += 1
            out["left"].append(str(path))
            continue
        files.write_text(path, json.dumps({**rec, "upstream_sha256": hit.sha256.iloc[0]}, indent=1, default=float))
        assert results.read(path)["run_id"] == path.stem  # the id is the config's: unchanged
        out["added"] += 1
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_root", nargs="?", default=None)
    p.add_argument("--profile", default="mini")
    a = p.parse_args(argv)
    cfg = config.load(a.profile)
    counts = migrate(Path(a.results_root or cfg["results_root"]), cfg)
    print({k: v for k, v in counts.items() if k != "left"})
    for f in counts["left"]:
        print("  no manifest model with its recipe:", f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
