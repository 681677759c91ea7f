"""Sparse inference for the backbone: ONNX export, DeepSparse (or ONNX Runtime, or PyTorch) behind
one interface, torch tensors in and out.

    eng = engine.Engine(model, image_size=224, kind="deepsparse")   # the classifier is dropped
    feats = eng(images)            # any number of images: batches of eng.batch_size, last one padded
    eng.info()                     # {"engine": "deepsparse", "cores": 2, "isa": "avx512", ...}

Each engine is compiled once for its static batch size and reused; a partial last batch is padded
to that size, never recompiled. ONNX export uses opset 13 with the TorchScript exporter
(dynamo=False: the dynamo exporter needs onnxscript, which requires numpy 2 -- and deepsparse 1.8
gives wrong outputs with numpy 2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import check_choice
from .models import backbone as strip_head

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

KINDS = ("deepsparse", "onnxruntime", "torch")


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
    try:
        from deepsparse.cpu import cpu_architecture

        a = cpu_architecture()
        return {"cores": int(a["num_cores"]), "isa": a["isa"], "vendor": a.get("vendor_model", "")}
    except Exception:  # deepsparse missing or unsupported CPU
        return {"cores": os.cpu_count(), "isa": "unknown", "vendor": ""}


class Engine:
    """The backbone of `model` (its `fc` removed; pass `backbone=False` to keep the whole model)
    compiled by `kind` for a static batch size."""

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        batch_size: int = 64,
        kind: str = "deepsparse",
        num_cores: int | None = None,
        backbone: bool = True,
        workdir: str | Path | None = None,
    ):
        check_choice("engine", kind, KINDS)
        self.kind, self.batch_size, self.image_size = kind, int(batch_size), int(image_size)
        self.num_cores = num_cores or cpu_info()["cores"]
        self.module = (strip_head(model) if backbone else model).eval().cpu()
        self._tmp = None
        if kind == "torch":
            self.module = self.module.to(memory_format=torch.channels_last)
            self._run = self._torch
            return
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sparsenb-onnx-")
            workdir = self._tmp.name
        self.onnx_path = export_onnx(
            self.module, Path(workdir) / f"model-b{self.batch_size}.onnx", self.batch_size, self.image_size
        )
        if kind == "deepsparse":
            import deepsparse

            self._engine = deepsparse.compile_model(
                str(self.onnx_path), batch_size=self.batch_size, num_cores=self.num_cores
            )
            self._run = lambda x: self._engine.run([x])[0]
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.num_cores
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
            self._run = lambda x: sess.run(None, {"input": x})[0]

    def _torch(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.module(t).numpy()

    def info(self) -> dict:
        return {"engine": self.kind, "batch_size": self.batch_size, "num_cores": self.num_cores, **cpu_info()}

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """One full batch (exactly batch_size images), float32 NCHW."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

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
