"""Proof that every package of the card works here, together, in this environment."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent


def test_numpy_is_1x():
    # the committed evidence (generated data, records) was made with numpy 1.26; moving the main
    # environment to numpy 2 needs a byte-for-byte check first (pyproject.toml)
    assert np.__version__.startswith("1.26."), np.__version__


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


def test_deepsparse_lives_in_its_own_environment_with_numpy_1():
    from sparsenb import engine

    with pytest.raises(ImportError):
        import deepsparse  # noqa: F401 - not in the main environment
    py = str(engine.deepsparse_python())
    out = subprocess.run(
        [py, "-c", "import numpy, deepsparse; print(numpy.__version__, deepsparse.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith("1.26.") and out[1] == "1.8.0"


def test_deepsparse_matches_onnxruntime():
    """The trap of deepsparse 1.8 (wrong outputs under numpy 2), checked where it runs: its worker."""
    import onnxruntime as ort

    from sparsenb import engine

    model = _small_cnn()
    x = torch.randn(4, 3, 32, 32)
    eng = engine.Engine(model, 32, 4, "deepsparse", num_cores=2, backbone=False)
    ref = ort.InferenceSession(str(eng.onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[
        0
    ]
    out = eng(x).numpy()
    with torch.no_grad():
        pt = model(x).numpy()
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < 1e-4, f"deepsparse differs from onnxruntime by {rel:.2e}"
    assert np.abs(ref - pt).max() / np.abs(pt).max() < 1e-4


def test_the_deepsparse_worker_refuses_numpy_2(tmp_path):
    """A numpy 2 in the DeepSparse environment: the worker says so and exits before compiling."""
    from sparsenb import engine

    fake = tmp_path / "numpy"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "2.1.0"\n')
    r = subprocess.run(
        [str(engine.deepsparse_python()), str(engine.WORKER), "m.onnx", "1", "1"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    msg = json.loads(r.stdout.splitlines()[0])
    assert not msg["ok"] and "numpy 2.1.0" in msg["error"] and "wrong outputs" in msg["error"]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["SEQUENTIAL", "RANDOM"])
def test_ffcv_writes_and_reads_back_on_cpu(tmp_path, order):
    from ffcv.fields import IntField, RGBImageField
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 24, 20, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, 50)
    data = [(images[i], int(labels[i])) for i in range(50)]
    path = tmp_path / "d.beton"
    DatasetWriter(
        str(path), {"image": RGBImageField(write_mode="raw"), "label": IntField()}, num_workers=1
    ).from_indexed_dataset(data)
    loader = Loader(
        str(path),
        batch_size=16,
        num_workers=1,
        order=getattr(OrderOption, order),
        seed=0,
        drop_last=False,
        pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()], "label": [IntDecoder(), ToTensor()]},
    )
    got_x, got_y = [], []
    for x, y in loader:
        assert x.device.type == "cpu"
        got_x.append(x.clone())
        got_y.append(y.clone())
    x, y = torch.cat(got_x).numpy(), torch.cat(got_y).numpy()[:, 0]
    assert x.shape == (50, 24, 20, 3)
    if order == "SEQUENTIAL":
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_array_equal(x, images)
    else:
        assert not np.array_equal(y, labels)
        # every image comes back once, with its own label
        key = {images[i].tobytes(): labels[i] for i in range(50)}
        assert sorted(key[x[i].tobytes()] for i in range(50)) == sorted(labels)
        assert all(key[x[i].tobytes()] == y[i] for i in range(50))


@pytest.mark.slow
def test_papermill_injects_parameter(tmp_path):
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell("value = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("import json, pathlib\npathlib.Path(out).write_text(json.dumps(value * 2))"),
    ]
    src, dst, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb", tmp_path / "value.json"
    nbformat.write(nb, src)
    pm.execute_notebook(
        str(src), str(dst), parameters={"value": 21, "out": str(out)}, kernel_name="python3", progress_bar=False
    )
    assert json.loads(out.read_text()) == 42
    # and from the command line, as the sweeps and the README call it
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(src),
            str(dst),
            "-p",
            "value",
            "5",
            "-p",
            "out",
            str(out),
            "-k",
            "python3",
            "--no-progress-bar",
        ],
        check=True,
        capture_output=True,
    )
    assert json.loads(out.read_text()) == 10


def test_kernel_python3_is_this_environment():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    exe = Path(spec.argv[0])
    assert exe.name.startswith("python")
    out = subprocess.run(
        [spec.argv[0], "-c", "import sparsenb, sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out).resolve() == Path(sys.prefix).resolve()


def test_every_notebook_has_a_parameters_cell():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = json.loads(path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
        # plain assignments only, so papermill can override every one of them
        for line in "".join(tagged[0]["source"]).splitlines():
            line = line.split("#")[0].strip()
            assert not line or "=" in line, f"{path.name}: parameters cell line {line!r} is not an assignment"
