"""Inference for the backbone: PyTorch, ONNX Runtime, OpenVINO and DeepSparse behind one interface,
torch tensors in and out, at FP32, INT8 (post-training static quantization: sparsenb.quantize) or
BF16 (OpenVINO; PyTorch autocast).

    eng = engine.Engine(model, image_size=224, kind="deepsparse")   # the classifier is dropped
    feats = eng(images)            # any number of images: batches of eng.batch_size, last one padded
    eng.info()                     # {"engine": "deepsparse", "cores": 2, "isa": "avx512", ...}
    eng.timed(x, iters)            # {"cpu_s": ..., "wall_s": ...} of `iters` runs of one batch
    eng.kernel()                   # what the engine ran: {"kernel": "...", "densified": bool, ...}

Each engine is compiled once for its static batch size and reused; a partial last batch is padded
to that size, never recompiled. ONNX export uses opset 13 with the TorchScript exporter
(dynamo=False). DeepSparse runs in its own environment (`.venv-deepsparse`, made by `make setup`;
sparsenb/deepsparse_worker.py), a worker process that receives and returns arrays: it is end of life
and pins numpy < 2 and onnx < 1.15, which the main environment no longer has to.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import UserError, check_choice
from .models import backbone as strip_head

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

KINDS = ("deepsparse", "onnxruntime", "openvino", "torch")
PRECISIONS = {  # what each engine runs here (DeepSparse INT8: quantize.conv_integer_layout)
    "deepsparse": ("fp32", "int8"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "torch": ("fp32", "bf16"),
}
WORKER = Path(__file__).with_name("deepsparse_worker.py")


def export_onnx(module: nn.Module, path: str | Path, batch_size: int, image_size: int) -> Path:
    """Export `module` (eval mode) with a static input (batch_size, 3, image_size, image_size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    dummy = torch.zeros(batch_size, 3, image_size, image_size)
    with torch.no_grad():
        torch.onnx.export(
            module,
            dummy,
            str(path),
            input_names=["input"],
            output_names=["output"],
            opset_version=13,
            dynamo=False,
            do_constant_folding=True,
        )
    return path


def cpu_info() -> dict:
    """Cores this process may use and the widest vector ISA (avx512 / avx2), from /proc/cpuinfo."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        line = next((x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags")), "flags:")
        flags = set(line.split(":", 1)[1].split())
    return {
        "cores": len(os.sched_getaffinity(0)),
        "isa": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "unknown",
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
    }


def deepsparse_python() -> Path:
    """The DeepSparse environment's interpreter (SPARSENB_DEEPSPARSE_PYTHON, else .venv-deepsparse)."""
    path = Path(
        os.environ.get("SPARSENB_DEEPSPARSE_PYTHON") or Path(__file__).parents[1] / ".venv-deepsparse/bin/python"
    )
    if not path.exists():
        raise UserError(
            f"DeepSparse runs in its own environment and {path} is missing: run `make setup` (it builds "
            "`.venv-deepsparse`), or point SPARSENB_DEEPSPARSE_PYTHON at a Python with deepsparse==1.8.0 and numpy<2"
        )
    return path


def deepsparse_version() -> str | None:
    """deepsparse's version in its environment, from the package metadata (no process started)."""
    with contextlib.suppress(UserError):
        site = deepsparse_python().parents[1] / "lib"
        found = sorted(site.glob("python*/site-packages/deepsparse-*.dist-info"))
        return found[-1].name.removeprefix("deepsparse-").removesuffix(".dist-info") if found else None
    return None


class _DeepSparseWorker:
    """One compiled DeepSparse model in a worker process of the DeepSparse environment."""

    def __init__(self, onnx_path: Path, batch_size: int, cores: int):
        cmd = [str(deepsparse_python()), str(WORKER), str(onnx_path), str(batch_size), str(cores)]
        env = {**os.environ, "NM_DISABLE_ANALYTICS": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        # stderr: the parent's file descriptor 2 (a notebook kernel's sys.stderr has no file descriptor)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.facts = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the DeepSparse worker exited (code {self.proc.wait()}); its error is above")
        out = json.loads(line)
        if not out.pop("ok"):
            raise RuntimeError(out["error"])
        return out

    def ask(self, cmd: str, array: np.ndarray | None = None, **kw):
        if array is not None:
            array = np.ascontiguousarray(array)
            kw = {**kw, "shape": list(array.shape), "dtype": str(array.dtype)}
        self.proc.stdin.write((json.dumps({"cmd": cmd, **kw}) + "\n").encode())
        if array is not None:
            self.proc.stdin.write(array.tobytes())
        self.proc.stdin.flush()
        out = self._reply()
        if cmd != "run":
            return out
        dtype = np.dtype(out["dtype"])
        data = self.proc.stdout.read(int(np.prod(out["shape"])) * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype).reshape(out["shape"]).copy()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


class Engine:
    """The backbone of `model` (its `fc` removed; pass `backbone=False` to keep the whole model)
    compiled by `kind` at `precision` for a static batch size. INT8 needs `calibration` images
    (N, 3, H, W) of the task: post-training static quantization (sparsenb.quantize)."""

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        batch_size: int = 64,
        kind: str = "deepsparse",
        num_cores: int | None = None,
        backbone: bool = True,
        workdir: str | Path | None = None,
        precision: str = "fp32",
        calibration: np.ndarray | None = None,
    ):
        check_choice("engine", kind, KINDS)
        check_choice(f"precision of {kind}", precision, PRECISIONS[kind])
        self.kind, self.precision, self.batch_size, self.image_size = kind, precision, int(batch_size), int(image_size)
        self.num_cores = num_cores or cpu_info()["cores"]
        self.module = (strip_head(model) if backbone else model).eval().cpu()
        self.weight_sparsity = _weight_sparsity(self.module)
        if kind == "torch":
            self.module = self.module.to(memory_format=torch.channels_last)
            self._run = self._torch
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="sparsenb-onnx-") if workdir is None else None
        workdir = Path(workdir or self._tmp.name)
        self.onnx_path = export_onnx(
            self.module, workdir / f"model-b{self.batch_size}.onnx", self.batch_size, image_size
        )
        if precision == "int8":
            from .quantize import conv_integer_layout, int8_static

            if calibration is None:
                raise UserError(f"{kind} INT8 needs calibration images (N, 3, H, W) of the task: pass calibration=")
            self.onnx_path = int8_static(self.onnx_path, workdir / f"model-b{self.batch_size}-int8.onnx", calibration)
            if kind == "deepsparse":
                self.onnx_path = conv_integer_layout(self.onnx_path, self.onnx_path.with_suffix(".convinteger.onnx"))
        getattr(self, f"_compile_{kind}")()
        self.module = None  # compiled: the PyTorch copy is not needed any more

    def _compile_deepsparse(self) -> None:
        self._worker = _DeepSparseWorker(self.onnx_path, self.batch_size, self.num_cores)
        self._run = lambda x: self._worker.ask("run", x)

    def _compile_onnxruntime(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_cores
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = False  # no arena held between runs: many engines live side by side
        opts.optimized_model_filepath = str(self.onnx_path.with_suffix(".optimized.onnx"))
        sess = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        self._run = lambda x: sess.run(None, {"input": x})[0]

    def _compile_openvino(self) -> None:
        import openvino as ov

        hint = "bf16" if self.precision == "bf16" else "f32"  # INT8: the unquantized rest in FP32
        self._compiled = ov.Core().compile_model(
            str(self.onnx_path),
            "CPU",
            {"INFERENCE_NUM_THREADS": self.num_cores, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": hint},
        )
        request = self._compiled.create_infer_request()
        self._run = lambda x: request.infer({0: x})[0].copy()

    def _torch(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.module(t).float().numpy()

    def info(self) -> dict:
        out = {"engine": self.kind, "batch_size": self.batch_size, "num_cores": self.num_cores, **cpu_info()}
        return out if self.precision == "fp32" else {**out, "precision": self.precision}

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """One full batch (exactly batch_size images), float32 NCHW."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def timed(self, x: np.ndarray, iters: int) -> dict:
        """CPU seconds of the process that runs the engine and wall seconds of `iters` runs of the
        batch `x`, after one warm-up run."""
        self.run_batch(x)
        if self.kind == "deepsparse":
            return {k: v for k, v in self._worker.ask("time", iters=iters).items() if k != "iters"}
        w, c = time.perf_counter(), time.process_time()
        for _ in range(iters):
            self.run_batch(x)
        return {"cpu_s": time.process_time() - c, "wall_s": time.perf_counter() - w}

    def kernel(self) -> dict:
        """What the engine ran for the convolutions: `kernel` (its own name for it), and `densified`
        (True where the model is sparse but the kernel computes every weight)."""
        if self.kind == "deepsparse":
            return self._deepsparse_kernels()
        if self.kind == "onnxruntime":
            import onnx

            ops = collections.Counter(
                n.op_type for n in onnx.load(self.onnx_path.with_suffix(".optimized.onnx")).graph.node
            )
        elif self.kind == "openvino":
            rt = [op.get_rt_info() for op in self._compiled.get_runtime_model().get_ordered_ops()]
            ops = collections.Counter(
                r["primitiveType"].astype(str) for r in rt if r["layerType"].astype(str) == "Convolution"
            )
        else:
            ops = collections.Counter({f"aten convolution ({self.precision})": 1})
        conv = [(k, v) for k, v in ops.most_common() if "conv" in k.lower()] or ops.most_common(1)
        return {"kernel": conv[0][0] if conv else "?", "densified": self.weight_sparsity > 0.01}

    def _deepsparse_kernels(self) -> dict:
        """DeepSparse's own layer analysis: its kernels by share of FLOPs (`ks_*`: its sparse kernels,
        named by the sparsity they run at; `pyramid`: fused blocks whose sparsity it does not report)."""
        layers = self._worker.ask("analyze")["layers"]
        flops = collections.Counter()
        for e in layers:
            flops[re.sub(r"[-_][0-9.]+%?.*$", "", e["name"])] += e["required_flops"]
        total = sum(flops.values()) or 1
        sparse = sum(v for k, v in flops.items() if k.startswith("ks_")) / total
        name = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in flops.most_common(2))
        return {
            "kernel": name,
            "densified": None if sparse == 0 else False,  # None: its analysis does not say
            "sparse_kernel_flops": round(sparse, 3),
            "supported_ops": self._worker.facts["fraction_of_supported_ops"],
        }

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().cpu().float().numpy()
        outs = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i : i + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:  # pad, never recompile
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.float32)])
            outs.append(self.run_batch(chunk)[:n])
        out = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
        return torch.from_numpy(out.reshape(len(x), -1))


def _weight_sparsity(module: nn.Module) -> float:
    """Fraction of zeros among the convolution and linear weights."""
    ws = [m.weight for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in ws)
    return float(sum(int((w == 0).sum()) for w in ws) / total) if total else 0.0
