"""09_detection's run and figures with the profile's detector (`profiles.Profile.detector`): the
CenterNet-style detector on generated scenes (mini: sparsenb.detection) or torchvision's FCOS on
PASCAL VOC (paper: sparsenb.fcos). The notebook calls these, the same for every profile.

    recs = finetune.cell(cell, detectors.run)   # each run recorded as it lands
    detectors.figures(rec, spec)                # its per-epoch curve and its example detections
"""

from __future__ import annotations

from pathlib import Path

from . import detection, fcos, paths, plots, profiles
from .errors import check_choice

# a detector -> its module: run(spec, device) and example_images(record, spec) -> (images, class names)
MODULES = {"centernet": detection, "fcos": fcos}


def module_of(spec):
    """The module of the spec's profile's detector."""
    name = profiles.of(spec.cfg).detector
    check_choice(f"detector of the {spec.profile} profile (sparsenb.profiles)", name, MODULES)
    return MODULES[name]


def run(spec, device=None) -> dict:
    """One 09_detection run (a `specs.DetectionSpec`) with its profile's detector: what its record keeps."""
    return module_of(spec).run(spec, device)


def figures(rec: dict, spec) -> list[Path]:
    """A run's figures under figures/09_detection (a run with overrides: beside its records): its
    curve (test and validation mAP@0.5, training loss) and its example test images with the true
    and the finished detector's boxes. Returns their paths."""
    where = paths.output("figures", "09_detection", overrides=spec.overrides)
    seed = rec["config"]["upstream_seed"]
    title = f"detection: {rec['method']} {rec['sparsity']:.0%} (upstream seed {seed}) on {rec['dataset']}"
    out = [where / f"{rec['run_id']}.png", where / f"{rec['run_id']}-boxes.png"]
    plots.curve(detection.curve_rows(rec), path=out[0], title=title, metric="mAP@0.5")
    images, names = module_of(spec).example_images(rec, spec)
    detection.figure(rec, images, names, path=out[1])
    return out
