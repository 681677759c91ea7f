"""The inference engines: same features as PyTorch, padded last batch, compiled once."""

import pytest
import torch

from sparsenb import engine, models, prune


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


@pytest.mark.parametrize("kind", ["deepsparse", "onnxruntime", "torch"])
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
    assert info["engine"] == kind and info["batch_size"] == 8 and info["cores"] >= 1 and info["isa"]


def test_compiled_once_and_padding_does_not_recompile(sparse_model, monkeypatch):
    import deepsparse

    calls = []
    real = deepsparse.compile_model
    monkeypatch.setattr(deepsparse, "compile_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    eng = engine.Engine(sparse_model, image_size=32, batch_size=4, kind="deepsparse")
    for n in (4, 3, 1, 9):
        assert eng(torch.randn(n, 3, 32, 32)).shape == (n, 64)
    assert len(calls) == 1 and calls[0]["batch_size"] == 4


def test_unknown_engine_lists_valid(sparse_model):
    from sparsenb.config import ConfigError

    with pytest.raises(ConfigError, match="deepsparse, onnxruntime, torch"):
        engine.Engine(sparse_model, 32, kind="tensorrt")
