"""The README's code must run as written (a newcomer copies it first)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_python_block_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    m = re.search(r"linear ([\d.]+)\s+full ([\d.]+)\s+sparsity ([\d.]+)", out)
    assert m, out
    linear, full, sparsity = map(float, m.groups())
    assert 0.0 <= linear <= 1.0 and 0.0 <= full <= 1.0  # an untrained backbone: no accuracy promised
    assert abs(sparsity - 0.9) < 0.01
