"""DeepSparse in its own environment: this file runs as a script under `.venv-deepsparse/bin/python`
(deepsparse 1.8.0 is end-of-life and pins Python < 3.12, numpy < 2, onnx < 1.15, so it holds nothing
of the main environment back). It imports only the standard library, numpy and deepsparse, never
sparsenb. `sparsenb.engine` starts it and speaks to it over its stdin/stdout:

    request:  one JSON line {"cmd": "run" | "time" | "analyze" | "quit", ...}; "run" carries "shape"
              and "dtype" and is followed by the array's raw bytes (C order)
    reply:    one JSON line {"ok": true, ...}; for "run" with "shape" and "dtype", followed by the
              output's raw bytes; {"ok": false, "error": "..."} on failure

Started as `deepsparse_worker.py MODEL.onnx BATCH_SIZE NUM_CORES`, it compiles the model and replies
once with the engine's facts before the first request."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np  # noqa: E402

if int(np.__version__.split(".")[0]) >= 2:  # the trap: deepsparse 1.8 returns wrong outputs with numpy 2
    sys.stdout.write(
        json.dumps(
            {
                "ok": False,
                "error": f"numpy {np.__version__} in the DeepSparse environment: "
                "deepsparse 1.8 gives wrong outputs with numpy >= 2; run `make setup`",
            }
        )
        + "\n"
    )
    sys.exit(2)

import deepsparse  # noqa: E402
from deepsparse.cpu import cpu_architecture  # noqa: E402


def facts(engine) -> dict:
    arch = cpu_architecture()
    return {
        "deepsparse": deepsparse.__version__,
        "numpy": np.__version__,
        "cores": int(arch["num_cores"]),
        "isa": arch["isa"],
        "vnni": bool(arch.get("vnni", False)),
        "vendor": arch.get("vendor_model", ""),
        "fraction_of_supported_ops": float(engine.fraction_of_supported_ops),
    }


def timed(engine, x: np.ndarray, iters: int) -> dict:
    """`iters` runs of one batch: wall and process CPU seconds (the process runs nothing else)."""
    engine.run([x])  # warm
    w, c = time.perf_counter(), time.process_time()
    for _ in range(iters):
        engine.run([x])
    return {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "iters": iters}


def analyze(path: str, x: np.ndarray, batch_size: int, cores: int) -> dict:
    """DeepSparse's own layer analysis: per layer its name, the kernel sparsity it ran with and the
    bits per weight element (32 = FP32, 8 = INT8)."""
    from deepsparse.engine import model_debug_analysis

    a = model_debug_analysis(path, [x], batch_size=batch_size, num_cores=cores, num_iterations=2)
    layers = []

    def walk(infos):
        for e in infos:
            if e.get("required_flops", 0) > 0:
                layers.append({k: e[k] for k in ("name", "kernel_sparsity", "kernel_bits_per_ele", "required_flops")})
            walk(e.get("sub_layer_info", []))

    walk(a["layer_info"])
    return {"layers": layers}


def read_array(stream, header: dict) -> np.ndarray:
    """The raw bytes that follow a header {"shape": [...], "dtype": "..."} on `stream`."""
    dtype, shape = np.dtype(header["dtype"]), tuple(header["shape"])
    data = stream.read(int(np.prod(shape)) * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def main() -> None:
    path, batch_size, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def reply(obj: dict, array: np.ndarray | None = None) -> None:
        if array is not None:
            array = np.ascontiguousarray(array)
            obj = {**obj, "shape": list(array.shape), "dtype": str(array.dtype)}
        out.write((json.dumps(obj) + "\n").encode())
        if array is not None:
            out.write(array.tobytes())
        out.flush()

    try:
        engine = deepsparse.compile_model(path, batch_size=batch_size, num_cores=cores)
    except Exception as e:  # noqa: BLE001 - reported to the caller, which raises
        reply({"ok": False, "error": f"deepsparse could not compile {path}: {e}"})
        return
    reply({"ok": True, **facts(engine)})
    last = None
    for line in inp:
        req = json.loads(line)
        try:
            if req["cmd"] == "quit":
                return
            if req["cmd"] == "run":
                last = read_array(inp, req)
                reply({"ok": True}, engine.run([last])[0])
            elif req["cmd"] == "time":
                x = last if last is not None else engine.generate_random_inputs()[0]
                reply({"ok": True, **timed(engine, x, int(req["iters"]))})
            elif req["cmd"] == "analyze":
                x = last if last is not None else engine.generate_random_inputs()[0]
                reply({"ok": True, **analyze(path, x, batch_size, cores)})
            else:
                reply({"ok": False, "error": f"unknown command {req['cmd']!r}"})
        except Exception as e:  # noqa: BLE001
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
