"""The inference engines: same features as PyTorch, padded last batch, compiled once, every precision
each engine offers, DeepSparse in its own environment."""

import re

import numpy as np
import pytest
import torch

from sparsenb import engine, models, prune, quantize
from sparsenb.errors import UserError


@pytest.fixture(scope="module")
def sparse_model():
    torch.manual_seed(0)
    m = models.build("mini_resnet_s", 10).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return prune.magnitude(m, 0.9)


@pytest.fixture(scope="module")
def calibration():
    return np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("kind", engine.KINDS)
def test_engine_matches_pytorch_with_padding(sparse_model, kind):
    eng = engine.Engine(sparse_model, image_size=32, batch_size=8, kind=kind, num_cores=2)
    x = torch.randn(19, 3, 32, 32)  # 2 full batches + a partial one of 3
    with torch.no_grad():
        ref = models.backbone(sparse_model)(x)
    out = eng(x)
    assert out.shape == ref.shape == (19, 64)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel < 1e-4, f"{kind}: relative error {rel:.2e}"
    info = eng.info()
    assert info["engine"] == kind and info["batch_size"] == 8 and info["cores"] >= 1 and info["isa"] != "unknown"
    t = eng.timed(x[:8].numpy(), 3)
    assert t["cpu_s"] > 0 and t["wall_s"] > 0
    k = eng.kernel()
    assert k["kernel"] and k["kernel"] != "?"
    # only DeepSparse has sparse kernels (on this small model it runs fused "pyramids", whose sparsity
    # its analysis does not report)
    assert k["densified"] is True if kind != "deepsparse" else k["densified"] in (None, False)


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
def test_int8_keeps_the_zeros_and_stays_close_to_fp32(sparse_model, calibration, kind):
    eng = engine.Engine(sparse_model, 32, 8, kind, num_cores=1, precision="int8", calibration=calibration)
    x = torch.from_numpy(calibration[:16])
    with torch.no_grad():
        ref = models.backbone(sparse_model)(x)
    rel = ((eng(x) - ref).abs().max() / ref.abs().max()).item()
    assert rel < 0.05, f"{kind} INT8: relative error {rel:.2e}"
    fp32 = quantize.weight_sparsity(eng.onnx_path.with_name("model-b8.onnx"))
    assert quantize.weight_sparsity(eng.onnx_path) == pytest.approx(fp32, abs=1e-3) and fp32 > 0.85
    assert re.search(r"^QLinearConv$|_I8$", eng.kernel()["kernel"])  # the INT8 kernels ran


def test_bf16_and_bad_precisions(sparse_model, calibration):
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref = models.backbone(sparse_model)(x)
    for kind in ("torch", "openvino"):
        out = engine.Engine(sparse_model, 32, 8, kind, num_cores=1, precision="bf16")(x)
        assert ((out - ref).abs().max() / ref.abs().max()).item() < 0.05
    with pytest.raises(Exception, match="precision of deepsparse.*fp32, int8"):
        engine.Engine(sparse_model, 32, 8, "deepsparse", precision="bf16")
    with pytest.raises(UserError, match="calibration images"):
        engine.Engine(sparse_model, 32, 8, "onnxruntime", precision="int8")


def test_compiled_once_and_padding_does_not_recompile(sparse_model, monkeypatch):
    calls = []
    real = engine._DeepSparseWorker.__init__
    monkeypatch.setattr(engine._DeepSparseWorker, "__init__", lambda s, *a: calls.append(a) or real(s, *a))
    eng = engine.Engine(sparse_model, image_size=32, batch_size=4, kind="deepsparse")
    for n in (4, 3, 1, 9):
        assert eng(torch.randn(n, 3, 32, 32)).shape == (n, 64)
    assert len(calls) == 1 and calls[0][1] == 4


def test_a_missing_deepsparse_environment_names_the_fix(sparse_model, monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSENB_DEEPSPARSE_PYTHON", str(tmp_path / "nothing/bin/python"))
    with pytest.raises(UserError, match="make setup"):
        engine.Engine(sparse_model, 32, 4, "deepsparse")


def test_unknown_engine_lists_valid(sparse_model):
    from sparsenb.config import ConfigError

    with pytest.raises(ConfigError, match="deepsparse, onnxruntime, openvino, torch"):
        engine.Engine(sparse_model, 32, kind="tensorrt")


@pytest.mark.slow
def test_deepsparse_sparse_int8_runs_its_own_kernels(tmp_path):
    """Sparse INT8 without SparseML: ORT's static quantizer, then the ConvInteger layout. DeepSparse
    supports every op of it, runs its sparse kernels, matches ONNX Runtime on the same graph, and the
    weights keep their sparsity (ResNet18 at 64 px: big enough for its sparse kernels)."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = prune.magnitude(models.build("resnet18", 10).eval(), 0.9, include_head=False)
    cal = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    eng = engine.Engine(model, 64, 4, "deepsparse", num_cores=1, precision="int8", calibration=cal, workdir=tmp_path)
    k = eng.kernel()
    assert k["supported_ops"] >= 0.98 and k["sparse_kernel_flops"] > 0.3 and k["densified"] is False, k
    ref = ort.InferenceSession(str(eng.onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": cal[:4]})[0]
    out = eng(torch.from_numpy(cal[:4])).numpy().reshape(ref.shape)
    # its sparse INT8 kernels round requantized activations otherwise than ONNX Runtime (on AVX2 it
    # emulates VNNI): measured here 1.3 % of the mean output on average, 1.6 % of the largest at most
    # (the INT8-vs-FP32 error itself is ~2 %); where its fused blocks run, the outputs are identical
    mean_rel, max_rel = np.abs(out - ref).mean() / np.abs(ref).mean(), np.abs(out - ref).max() / np.abs(ref).max()
    assert mean_rel < 0.02 and max_rel < 0.03, (mean_rel, max_rel)
    fp32 = quantize.weight_sparsity(tmp_path / "model-b4.onnx")
    assert quantize.weight_sparsity(eng.onnx_path) == pytest.approx(fp32, abs=1e-3) and fp32 > 0.85


def test_bench_ratios_take_the_fastest_engine_of_each_precision():
    from sparsenb import enginebench

    rows = [
        {"batch": 64, "engine": e, "precision": p, "sparsity": s, "img_per_cpu_s": v, "kernel": k}
        for e, p, s, v, k in [
            ("torch", "fp32", 0.0, 10.0, "aten"),
            ("onnxruntime", "fp32", 0.0, 20.0, "Conv"),
            ("openvino", "int8", 0.0, 80.0, "jit_avx2_I8"),
            ("onnxruntime", "int8", 0.0, 60.0, "QLinearConv"),
            ("deepsparse", "fp32", 0.9, 70.0, "ks_convolution"),
            ("deepsparse", "int8", 0.9, 120.0, "ks_convolution"),
            ("openvino", "int8", 0.9, 81.0, "jit_avx2_I8"),
            ("deepsparse", "int8", 0.9, 999.0, "ks"),  # another batch size: ignored below
        ]
    ]
    rows[-1]["batch"] = 1
    r = enginebench.ratios(rows)
    assert (r["ratio_s90_fp32_vs_dense_fp32"], r["ratio_s90_int8_vs_dense_fp32"]) == (3.5, 6.0)
    assert r["ratio_s90_int8_vs_dense_int8"] == 1.5 and r["fastest"]["dense_int8"].startswith("openvino int8")
    peers = enginebench.peers({"bf16": False}, quick=False)
    assert ("deepsparse", "int8", 0.9, "uniform") in peers and ("torch", "bf16", 0.0, "-") not in peers
    assert {p[:2] for p in peers if not p[2]} >= {("torch", "fp32"), ("openvino", "int8"), ("onnxruntime", "int8")}
