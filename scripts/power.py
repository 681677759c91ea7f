"""The simulated power of each family-contrast finding at the paper's effect size (issue 38).

For each finding in `verdicts.FAMILY_CONTRASTS`: its unit values on this repo's records (the
profile's summary selection), their variance components (`sparsenb.power.components`), the paper's
own estimate from its released results, and the power of the study's test at that effect for the
observed design and for 12 tasks x 5 upstream seeds (the issue's design), before Holm and at Holm's
first step over the 9 primary findings. Prints the table and writes outputs/summary/power-<profile>.csv.

    python scripts/power.py [--profile mini] [--sims 2000]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from sparsenb import files, paths, power, report, stats, summary, verdicts


def rows(profile: str, sims: int) -> list[dict]:
    tidy = summary.select(summary.load("results", profile=profile), "results", profile=profile)
    D = verdicts.Data(verdicts.one_arch(tidy.frame, None))
    paper = report._paper_findings().drop_duplicates("key").set_index("key").estimate
    out = []
    for key, (ft, a, b, claim) in verdicts.FAMILY_CONTRASTS.items():
        literal = key == "rigl_5x_over_1x"  # its primary row is the literal contrast (the budget itself)
        units, _ = verdicts.family_units(D, ft, list(a), list(b), literal)
        table, _ = stats._complete(units.unstack("upstream_seed"))
        comps = power.components(table.to_numpy(float))
        effect = float(paper[key]) / 100
        row = {"finding": key, "claim": claim, "paper_effect": round(100 * effect, 1)}
        row |= {f"sd_{k}": round(100 * v**0.5, 2) for k, v in comps.items()}
        for tasks, seeds in ((table.shape[0], table.shape[1]), (12, 5)):
            p = power.simulate(effect, comps, tasks, seeds, claim, sims=sims)
            row |= {
                f"power_{tasks}x{seeds}": round(p["before_holm"], 2),
                f"holm1_{tasks}x{seeds}": round(p["holm_first"], 2),
            }
        out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="mini")
    p.add_argument("--sims", type=int, default=2000)
    a = p.parse_args(argv)
    df = pd.DataFrame(rows(a.profile, a.sims))
    out = paths.outputs() / "summary" / f"power-{a.profile}.csv"
    files.write_csv(out, df)
    print(df.to_string(index=False))
    print(f"(effects and sd in points; power: the share of {a.sims} simulated studies that agree) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
