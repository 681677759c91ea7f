#!/usr/bin/env bash
# How the shipped mini upstream reference set was made on a lent GPU machine (the same recipe as
# `make upstream` on the CPU, many runs at once): D measured, STR's s_init calibrated, then every
# model of every seed. Usage: scripts/gpu_upstream.sh <phase: measure|build> <seconds> <out dir>
# Phases resume: finished runs are kept (CSV rows, checkpoints in the manifest).
set -uo pipefail
phase=$1; budget=$2; out=$3
export PYTHONPATH=$PWD SPARSENB_PROGRESS=0 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
export SPARSENB_DATA_ROOT=${SPARSENB_DATA_ROOT:-$PWD/.devcarry/data}
workers=${WORKERS:-12}
mkdir -p "$out/logs"
nvidia-smi -L || true
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
end=$(( $(date +%s) + budget ))
left() { echo $(( end - $(date +%s) )); }

pool() {   # pool <n> <command...>: n workers of the same resumable command, stopped at the budget
  local n=$1; shift
  [ "$(left)" -gt 20 ] || { echo "no time left for: $*"; return; }
  for i in $(seq "$n"); do timeout "$(left)" "$@" > "$out/logs/$phase-$i.log" 2>&1 & done
  wait
}

if [ "$phase" = measure ]; then
  pool "$workers" python3 -m sparsenb upstream convergence
  cp outputs/upstream/convergence.csv "$out/"
  cat outputs/upstream/convergence.csv
elif [ "$phase" = calibrate ]; then
  pool 4 python3 -m sparsenb upstream calibrate-str
  cp outputs/upstream/str_calibration.csv "$out/"
  cat outputs/upstream/str_calibration.csv
else
  python3 -m sparsenb upstream plan
  pool "$workers" python3 -m sparsenb upstream build
  python3 -m sparsenb upstream verify | tail -n 3
  tar czf "$out/mini.tgz" -C outputs/upstream mini
fi
for f in "$out"/logs/*.log; do echo "== $f"; grep -v "^ *$" "$f" | tail -n 2; done | tail -n 60
tar czf "$out/logs.tgz" -C "$out" logs && rm -r "$out/logs"
