#!/usr/bin/env bash
# Probe (not the study): does a re-scaled mini upstream task plateau in fewer SGD steps? Dense
# convergence of two variants on a GPU machine: 4x the images per class, and 32 classes (objects only).
set -uo pipefail
export PYTHONPATH=$PWD SPARSENB_PROGRESS=0 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
out=$1; mkdir -p $out/logs
run_variant() {   # name, overrides-json, workers
  local name=$1 over=$2 n=$3
  export SPARSENB_OUTPUTS=/tmp/probe-$name
  python3 -c "import json, sys; from sparsenb import config, data; cfg=config.load('mini', json.loads(sys.argv[1])); [data.get('upstream', cfg['data_root'], s, cfg=cfg) for s in ('train','val','test')]" "$over"
  for i in $(seq $n); do timeout 360 python3 -m sparsenb upstream convergence --overrides "$over" > $out/logs/$name-$i.log 2>&1 & done
}
run_variant data4x '{"mini_data.upstream.train_per_class": 320, "upstream.convergence.epochs": [7, 14, 28], "upstream.convergence.seeds": [0], "upstream.convergence.all_seeds_up_to": 28, "upstream.convergence.search": null}' 4
run_variant cls32 '{"mini_data.upstream.classes": 32, "mini_data.upstream.train_per_class": 320, "mini_data.upstream.val_per_class": 80, "mini_data.upstream.test_per_class": 80, "upstream.convergence.epochs": [14, 28, 56, 112], "upstream.convergence.seeds": [0], "upstream.convergence.all_seeds_up_to": 112, "upstream.convergence.search": null}' 5
wait
for v in data4x cls32; do echo "== $v"; cat /tmp/probe-$v/upstream/convergence.csv; cp /tmp/probe-$v/upstream/convergence.csv $out/probe-$v.csv; done
tar czf $out/logs.tgz -C $out logs; rm -r $out/logs
