#!/bin/bash
# One worker of regime B's reference set (issue 38); run it in two shells. Every step is resumable and
# shared by claims: a killed worker loses at most an epoch. STR is not in the list, nor its
# calibration: our STR departs from the official code where it matters at 90 % (the threshold is live
# from step 0 where the official sInit -3200 keeps it off for ~25 % of the run, and weight decay on
# s is not the official one: /work review, issue 38); fix it, calibrate, then build it.
cd "$(dirname "$0")/.."
export NM_DISABLE_ANALYTICS=1 ORT_DISABLE_TELEMETRY=1 MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=4294967296 \
  MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 PYTHONHASHSEED=0 MPLBACKEND=Agg OMP_NUM_THREADS=1
PY=.venv/bin/python
$PY -m sparsenb upstream adopt -p mini_converged --source outputs/upstream/pilots/c32_w24_D112
for m in random_init dense; do $PY -m sparsenb upstream build -p mini_converged --method $m; done
for m in dense_2x gmp acdc woodfisher rigl_erk_1x lth_t dense_5x rigl_erk_5x; do
  # --replace only for WoodFisher: the pilot's pre-fix model (seed 0, 90%) is replaced by the official pruner's
  $PY -m sparsenb upstream build -p mini_converged --method $m $([ $m = woodfisher ] && echo --replace)
done
echo "worker done $(date)"
