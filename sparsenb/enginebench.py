"""`python -m sparsenb bench engine [--quick] [--cores N]`: is a sparse backbone worth it on a CPU,
given today's dense FP32, BF16 and INT8 engines? The peer set (sparsenb.engine): PyTorch FP32 (and
BF16 autocast where the CPU has BF16), ONNX Runtime FP32 / INT8, OpenVINO FP32 / BF16 / INT8,
DeepSparse FP32 dense and sparse (80 / 90 / 95 %, uniform and global magnitude, the stem dense),
DeepSparse INT8 dense and sparse (uniform; sparsenb.quantize.conv_integer_layout), and the other
INT8 engines on the 90 % model (they densify it). ResNet50 at 224 px (quick: the mini model at
32 px), batch 64 and batch 1.

A shared machine cannot fool it: every engine of a model runs once per round, rounds interleaved, the
primary figure is images per CPU-second of the process that runs the engine (threads: `cores`,
default 1), the median over rounds; a wall-clock rate is reported only when the engine held its
cores (CPU / wall >= 0.975 x cores). Ratios are taken within one run; every row carries the ISA, the
load average and the kernel the engine ran. sparsenb.bench prints one JSON line last and appends it
to outputs/bench/engine.jsonl."""

from __future__ import annotations

import os
import statistics

import numpy as np

SPARSITIES = (0.8, 0.9, 0.95)


def peers(cpu: dict, quick: bool) -> list[tuple[str, str, float, str]]:
    """(engine, precision, sparsity, scope) of every row: the dense peer set, DeepSparse sparse at
    each sparsity and scope, and the INT8 engines at 90 % (uniform)."""
    dense = [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32")]
    dense += [("openvino", "bf16"), ("openvino", "int8"), ("deepsparse", "fp32")]
    dense += [("torch", "bf16")] if cpu["bf16"] else []
    rows = [(e, p, 0.0, "-") for e, p in dense]
    sparsities = (0.9,) if quick else SPARSITIES
    rows += [("deepsparse", "fp32", s, scope) for s in sparsities for scope in ("uniform", "global")]
    rows += [("deepsparse", "int8", 0.0, "-")]
    rows += [("deepsparse", "int8", s, "uniform") for s in sparsities]
    rows += [(e, "int8", 0.9, "uniform") for e in ("onnxruntime", "openvino")]
    return rows


def _model(arch: str, sparsity: float, scope: str):
    import torch

    from . import models, prune

    torch.manual_seed(0)
    model = models.build(arch, 1000).eval()
    if sparsity:
        prune.magnitude(model, sparsity, scope=scope, include_head=False)
    return model


def _compile(arch, size, batch, row, cores, workdir):
    from . import engine

    kind, precision, sparsity, scope = row
    # one batch (at least 8 images): ONNX Runtime's calibrator holds every intermediate tensor of it
    calibration = np.random.default_rng(1).standard_normal((max(batch, 8), 3, size, size)).astype(np.float32)
    sub = f"{workdir}/{kind}-{precision}-{sparsity}-{scope}-b{batch}"
    model = _model(arch, sparsity, scope)
    return engine.Engine(
        model, size, batch, kind, num_cores=cores, workdir=sub, precision=precision, calibration=calibration
    )


def measure(arch: str, size: int, batch: int, cores: int, rounds: int, iters: int, quick: bool) -> list[dict]:
    """Every row of the peer set at one batch size, one model at a time (dense, then each sparsity and
    scope: all of a ResNet50's engines at batch 64 at once do not fit in 24 GB): its engines compiled
    once, then `rounds` interleaved rounds; per-CPU-second rates keep the groups comparable."""
    import tempfile

    from . import engine

    cpu = engine.cpu_info()
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    out = []
    groups: dict[tuple, list] = {}
    for r in peers(cpu, quick):
        groups.setdefault(r[2:], []).append(r)
    for rows in groups.values():
        with tempfile.TemporaryDirectory(prefix="sparsenb-bench-") as workdir:
            engines = [_compile(arch, size, batch, r, cores, workdir) for r in rows]
            times = [[eng.timed(x, iters) for eng in engines] for _ in range(rounds)]
            for i, (row, eng) in enumerate(zip(rows, engines)):
                out.append(_row(arch, batch, cores, row, eng, [t[i] for t in times], iters, cpu))
                print(_line(out[-1]), flush=True)
            for eng in engines:
                getattr(eng, "_worker", None) and eng._worker.close()
    return out


def _row(arch, batch, cores, row, eng, times: list[dict], iters: int, cpu: dict) -> dict:
    """One engine's row: median images per CPU-second over the rounds, the wall-clock rate of the
    rounds in which it held its cores, the kernel it ran, the machine."""
    cpu_rates = [iters * batch / t["cpu_s"] for t in times]
    walls = [iters * batch / t["wall_s"] for t in times if t["cpu_s"] / t["wall_s"] >= 0.975 * cores]
    kind, precision, sparsity, scope = row
    return {
        "arch": arch,
        "batch": batch,
        "engine": kind,
        "precision": precision,
        "sparsity": sparsity,
        "scope": scope,
        "cores": cores,
        "img_per_cpu_s": round(statistics.median(cpu_rates), 2),
        "img_per_s_wall": round(statistics.median(walls), 2) if walls else None,
        "cpu_per_wall": round(statistics.median(t["cpu_s"] / t["wall_s"] for t in times), 2),  # threads it kept busy
        **eng.kernel(),
        "isa": cpu["isa"],
        "vnni": cpu["vnni"],
        "load_avg": round(os.getloadavg()[0], 2),
    }


def _line(r: dict) -> str:
    wall = f"{r['img_per_s_wall']:8.1f}" if r["img_per_s_wall"] else "    (n/a)"
    dens = "densified" if r["densified"] else ""
    return (
        f"{r['arch']:<13} b{r['batch']:<3} {r['engine']:<12} {r['precision']:<5} {r['sparsity']:<5} {r['scope']:<8}"
        f"{r['img_per_cpu_s']:9.1f} img/CPU-s {wall} img/s wall   {r['kernel']:<26} {dens}"
    )


def ratios(rows: list[dict]) -> dict:
    """At batch 64 (quick: the largest batch): the fastest 90 % model of each precision against the
    fastest dense engine of FP32 and of INT8, by images per CPU-second; which engines they were."""
    big = max(r["batch"] for r in rows)
    rows = [r for r in rows if r["batch"] == big]

    def best(precision: str, sparse: bool) -> dict:
        pool = [
            r for r in rows if r["precision"] == precision and (r["sparsity"] == 0.9 if sparse else not r["sparsity"])
        ]
        return max(pool, key=lambda r: r["img_per_cpu_s"])

    d32, d8, s32, s8 = best("fp32", False), best("int8", False), best("fp32", True), best("int8", True)
    name = lambda r: f"{r['engine']} {r['precision']} ({r['kernel']})"  # noqa: E731
    return {
        "batch": big,
        "ratio_s90_fp32_vs_dense_fp32": round(s32["img_per_cpu_s"] / d32["img_per_cpu_s"], 2),
        "ratio_s90_int8_vs_dense_fp32": round(s8["img_per_cpu_s"] / d32["img_per_cpu_s"], 2),
        "ratio_s90_int8_vs_dense_int8": round(s8["img_per_cpu_s"] / d8["img_per_cpu_s"], 2),
        "fastest": {"dense_fp32": name(d32), "dense_int8": name(d8), "s90_fp32": name(s32), "s90_int8": name(s8)},
    }


def run(quick: bool = False, cores: int = 1, rounds: int = 3) -> dict:
    """The whole peer set at batch 64 and 1: {"rows": [...], **ratios}."""
    import torch

    torch.set_num_threads(cores)  # PyTorch's intra-op pool, as the other engines' thread settings
    arch, size, iters = ("mini_resnet_s", 32, 20) if quick else ("resnet50", 224, 2)
    rows = []
    for batch in (64, 1):
        rows += measure(arch, size, batch, cores, rounds, iters if batch > 1 else 16 * iters, quick)
    return {**ratios(rows), "rows": rows}
