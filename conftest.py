"""Test harness for tests/ and the notebooks under nbval (at the repository root so that
`make notebooks` alone gets it too). `make test` leaves no trace: everything the tests and the notebooks they execute
write goes under one temporary outputs root (SPARSENB_OUTPUTS), never the repository's outputs/.
Notebooks run under nbval with their own defaults plus the tiny scale below, given as their
`overrides` parameter (appended to each notebook's parameters cell at collection, as papermill injects
a parameter): the pipeline end to end in seconds, not the study. Python tests see the profiles as
they are; a test that wants another scale passes `overrides` itself."""

import os
import shutil
import tempfile

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SPARSENB_PROGRESS", "0")
_OUTPUTS = tempfile.mkdtemp(prefix="sparsenb-test-outputs-")
os.environ["SPARSENB_OUTPUTS"] = _OUTPUTS

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# the notebooks' test scale: upstream models of half an epoch (D = 0.5), everything else as profiled
NOTEBOOK_OVERRIDES = {
    "upstream.D": 0.5,
    "upstream.methods.lth_t.round_budget": 0.5,
    "detection.epochs": 1,  # 09: one epoch on a few scenes
    "detection.tasks.det_shapes10": {"train_images": 48, "val_images": 16, "test_images": 32},
}


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_OUTPUTS, ignore_errors=True)


@pytest.fixture
def toy_sweep(tmp_path):
    """A sweep file over a toy notebook (parameters x, log, sleep, hold): each run appends its x to
    tmp_path/log.txt after sleeping; x = 3 fails; an x in `hold` writes tmp_path/ready-<x> (its
    kernel's pid, the pid of the process running the notebook, $SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID)
    and then waits to be killed. `toy_sweep(xs, sleep=0.0, slurm=None, hold=())`."""
    import nbformat
    import yaml

    def make(xs, sleep=0.0, slurm=None, name="toy", hold=()):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        p = nbformat.v4.new_code_cell('profile = "mini"\nx = 0\nlog = ""\nsleep = 0.0\nhold = []')
        p.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "import time\nassert x != 3, 'x=3 is the broken run'\ntime.sleep(sleep)\nopen(log, 'a').write(f'{x}\\n')"
        )
        held = nbformat.v4.new_code_cell(
            "import os, time\nfrom pathlib import Path\n"
            "if x in hold:\n"
            "    task = os.environ.get('SLURM_ARRAY_JOB_ID', '') + '_' + os.environ.get('SLURM_ARRAY_TASK_ID', '')\n"
            "    ready = Path(log).with_name(f'ready-{x}')\n"
            "    ready.with_suffix('.tmp').write_text(f'{os.getpid()} {os.getppid()} {task}')\n"
            "    ready.with_suffix('.tmp').rename(ready)\n"
            "    time.sleep(3600)"
        )
        nb.cells = [p, held, body]
        nbformat.write(nb, tmp_path / "toy.ipynb")
        spec = {
            "notebooks": [str(tmp_path / "toy.ipynb")],
            "grid": {"x": xs},
            "parameters": {"log": str(tmp_path / "log.txt"), "sleep": sleep, **({"hold": list(hold)} if hold else {})},
            **({"slurm": slurm} if slurm else {}),
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        return tmp_path / f"{name}.yaml"

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    """Notebook items (nbval) carry the `notebooks` marker: `-m "not notebooks"` leaves them out; the
    parameters cell of each notebook gets the test scale as its `overrides` parameter -- a value of a
    declared parameter, like papermill's injection, recorded in the run ids of what the notebook runs."""
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebooks)
            cell = getattr(item, "cell", None)
            if cell is not None and "parameters" in cell.get("metadata", {}).get("tags", []):
                cell.source += f"\noverrides = {NOTEBOOK_OVERRIDES!r}  # conftest: the notebooks' test scale"


# Finetuning notebooks load upstream models, never train them: before the first notebook cell runs,
# the models their defaults use are built at the notebooks' test scale (the kernels' overrides).
NOTEBOOK_UPSTREAM = [("dense", 0.0, 0), ("gmp", 0.9, 0)]
_built: list[bool] = []


def build_upstream(models, overrides=None):
    """Build (method, sparsity, seed) upstream models at the notebooks' test scale under the current
    outputs root (`overrides` over NOTEBOOK_OVERRIDES)."""
    from sparsenb import config, upstream

    cfg = config.load("mini", {**NOTEBOOK_OVERRIDES, **(overrides or {})})
    for m, s, seed in models:
        upstream.build(m, s, cfg, seed, device="cpu")
    return cfg


def build_upstream_cli(env: dict, models=NOTEBOOK_UPSTREAM, overrides=NOTEBOOK_OVERRIDES) -> None:
    """The same through the command line a user runs (`python -m sparsenb upstream build`), in the
    environment `env` of a test's server or cluster (its outputs root), at the scale `overrides`."""
    import json
    import subprocess
    import sys

    for m, s, seed in models:
        cmd = [sys.executable, "-m", "sparsenb", "upstream", "build", "--method", m, "--sparsity", str(s)]
        cmd += ["--seed", str(seed), "--overrides", json.dumps(overrides)]
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1800)


def pytest_runtest_setup(item):
    if str(item.fspath).endswith(".ipynb") and not _built:
        build_upstream(NOTEBOOK_UPSTREAM)
        _built.append(True)
