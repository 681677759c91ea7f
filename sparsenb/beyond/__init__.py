"""Beyond accuracy: the project's own questions about sparse transfer (not the paper's) -- is a
transferred sparse model worse calibrated, does it cost some classes and examples more than others,
is it less robust to common corruptions, than its budget-matched dense control?

    calibration   ECE (equal-mass and equal-width), NLL, Brier, reliability bins, temperature scaling
    classes       per-class accuracy, Gini, disagreement, transfer-PIEs
    robustness    accuracy under common corruptions (imagecorruptions), computed on the fly
    study         the tables over a study's records (their stored predictions)
    findings      the findings as tests with keys, verdicts and intervals
    evidence      the one adapter to sparsenb.stats (estimate, interval, verdict)
    report        the tables and figures 08_beyond_accuracy writes
"""

from . import calibration, classes, evidence, findings, report, robustness, study

__all__ = ["calibration", "classes", "evidence", "findings", "report", "robustness", "study"]
