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


ROOT = README.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _links(text: str) -> set[str]:
    """Relative targets of markdown links and of `docs/<page>.md` mentions (anchors dropped)."""
    prose = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)  # code is not a link
    md = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", prose) if "://" not in t}
    return {t for t in md | set(re.findall(r"\bdocs/[\w.-]+\.md\b", text)) if t}


def test_readme_is_a_short_guide():
    lines = README.read_text().splitlines()
    assert len(lines) <= 260, f"README.md has {len(lines)} lines: move detail to docs/"
    first_screen = "\n".join(lines[:30])
    makefile = (ROOT / "Makefile").read_text()
    for target in ("paper-tables", "demo", "test"):
        assert f"make {target}" in first_screen, target
        assert re.search(rf"^{target}:", makefile, re.M), target


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_exists(page):
    targets = _links(page.read_text())
    base = ROOT if page == README else page.parent
    missing = [t for t in targets if not ((base / t).exists() or (ROOT / t).exists())]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_links_every_docs_page():
    linked = {Path(t).name for t in _links(README.read_text()) if t.startswith("docs/")}
    assert DOCS and linked >= {p.name for p in DOCS}, sorted({p.name for p in DOCS} - linked)


def test_readme_results_table_is_the_committed_summary():
    """The README's table of each sparse model minus its budget-matched control is the committed
    `outputs/summary/results/control_gaps.csv` as printed (0.1 points, 95% interval): a rerun
    summary that moves a number fails here until the README says it too."""
    import pandas as pd

    from sparsenb import summary

    m = re.search(r"^\| (\d+)%, points \|(.*)\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", README.read_text(), re.M)
    assert m, "README has no '| 90%, points | GMP | ...' table of gaps to the matched control"
    sparsity, names = int(m.group(1)) / 100, [c.strip() for c in m.group(2).split("|")]
    gaps = pd.read_csv(ROOT / "outputs" / "summary" / "results" / "control_gaps.csv")
    gaps = gaps[gaps.sparsity.round(2) == sparsity].set_index(["finetune", "method"])

    def shown(x: float) -> str:
        return f"{x:.1f}".replace("-", "−")

    rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in m.group(3).splitlines()]
    assert {r[0] for r in rows} == {"linear", "full"}, rows
    for finetune, *cells in rows:
        for name, cell in zip(names, cells, strict=True):
            g = gaps.loc[(finetune, summary.METHOD_NAMES[name])]
            assert cell == f"{shown(g.gap)} [{shown(g.gap_low)}, {shown(g.gap_high)}]", (finetune, name, cell)
