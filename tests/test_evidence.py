"""The committed study is evidence: nothing an ordinary run does replaces or deletes it, a run with
overrides writes to a root of its own, and the same run id gives the same numbers (issue 37)."""

import json
import subprocess

import pytest
import torch

from sparsenb import config, devices, evidence, files, finetune, paths, report, results, runs, upstream


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository standing in for the project: outputs/kept.csv committed."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "kept.csv").write_text("a\n1\n")
    (tmp_path / "outputs" / "m-abc.partial.pt").write_text("resume state")  # committed so a build goes on elsewhere
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "outputs"], check=True)
    subprocess.run(git + ["commit", "-qm", "evidence"], check=True)
    monkeypatch.setattr(evidence, "ROOT", tmp_path)
    evidence._tracked.cache_clear()
    yield tmp_path
    evidence._tracked.cache_clear()


def test_committed_files_keep_their_bytes_unless_the_flag_is_given(repo, monkeypatch):
    kept = repo / "outputs" / "kept.csv"
    assert evidence.committed(kept) and not evidence.committed(repo / "outputs" / "new.csv")
    files.write_text(kept, "a\n1\n")  # the same bytes: a reproduced file passes
    with pytest.raises(evidence.EvidenceError, match="committed evidence.*SPARSENB_REPLACE_EVIDENCE=1"):
        files.write_text(kept, "a\n2\n")
    with pytest.raises(evidence.EvidenceError, match="delete"):
        files.remove(kept)
    assert kept.read_text() == "a\n1\n" and not list(kept.parent.glob(".*tmp*"))
    files.write_text(repo / "outputs" / "new.csv", "x")  # not committed: written freely
    assert "outputs/m-abc.partial.pt" in evidence._tracked()
    assert not evidence.committed(repo / "outputs" / "m-abc.partial.pt")  # resume state is never evidence
    files.write_text(repo / "outputs" / "m-abc.partial.pt", "a later snapshot")
    monkeypatch.setenv(evidence.FLAG, "1")
    files.write_text(kept, "a\n2\n")
    assert kept.read_text() == "a\n2\n"


def test_a_rerun_of_a_committed_record_reports_and_never_overwrites(repo, monkeypatch, capsys):
    cfg = {"profile": "mini", "method": "gmp", "seed": 1}
    rid = results.run_id(cfg)
    where = repo / "outputs" / "results" / "03_full_ft" / f"{rid}.json"
    monkeypatch.setattr(evidence, "committed", lambda p: str(p) == str(where))
    monkeypatch.setattr(paths, "outputs", lambda: repo / "outputs")
    first = results.write("03_full_ft", cfg, {"reported": 0.9, "train_seconds": 1.0}, root=where.parent.parent)
    text = where.read_text()
    again = results.write("03_full_ft", cfg, {"reported": 0.9, "train_seconds": 7.0}, root=where.parent.parent)
    assert "reproduced" in capsys.readouterr().out and where.read_text() == text and again == first
    results.write("03_full_ft", cfg, {"reported": 0.8, "train_seconds": 7.0}, root=where.parent.parent)
    assert "differs from its committed record by reported -0.1" in capsys.readouterr().out
    assert where.read_text() == text
    assert json.loads((repo / "outputs/cache/reruns/03_full_ft" / where.name).read_text())["reported"] == 0.8


def test_overrides_get_roots_of_their_own():
    base = config.load("mini")
    ft = config.load("mini", {"full.epochs": 2})
    assert ft["checkpoint_root"] == base["checkpoint_root"]  # finetuning still reads the reference set
    assert "cache/overrides/full.epochs=2/results" in ft["results_root"]
    up = config.load("mini", {"upstream.D": 0.1})
    assert up["checkpoint_root"].endswith("cache/overrides/upstream.D=0.1/upstream/mini")
    kept = config.load("mini", {"results_root": "outputs/cache/demo/results", "upstream.D": 1})
    assert kept["results_root"] == str(paths.outputs() / "cache" / "demo" / "results")
    machine = config.load("mini", {"num_workers": 0})
    assert machine["results_root"] == base["results_root"]


def test_a_summary_with_overrides_goes_beside_its_records(tmp_path):
    class Tidy:
        label = "results"

    assert report.folder("results", Tidy(), None) == paths.outputs() / "summary" / "results"
    own = report.folder("results", Tidy(), {"linear.epochs": 5})
    assert own == paths.outputs() / "cache" / "overrides" / "linear.epochs=5" / "summary" / "results"


def test_a_committed_model_of_another_recipe_is_not_retrained(monkeypatch):
    cfg = config.load("mini", {"checkpoint_root": str(paths.ROOT / "outputs" / "upstream" / "mini")})
    monkeypatch.setattr(upstream.checkpoints, "verify", lambda *a: "stale")
    monkeypatch.setattr(evidence, "committed", lambda p: True)
    monkeypatch.setattr(upstream, "_make", lambda *a: pytest.fail("trained over committed evidence"))
    monkeypatch.setattr(upstream.files, "locked", lambda p: __import__("contextlib").nullcontext())
    with pytest.raises(evidence.EvidenceError, match="another recipe.*--replace"):
        upstream.build("dense", 0.0, cfg, 0)


@pytest.mark.slow
def test_the_same_run_id_gives_the_committed_number_on_one_and_two_threads():
    """The README's 03 example on digits (GMP 90%): the same number whatever the thread count the
    caller set (the run computes on one) -- the committed record's, bit for bit, on the instruction
    set the study was made on (AVX-512; another one's kernels round differently)."""
    shipped = str(paths.ROOT / "outputs" / "upstream" / "mini")
    spec = runs.spec("03_full_ft", method="gmp", sparsity=0.9, dataset="digits", checkpoint_root=shipped)
    committed = paths.ROOT / "outputs" / "results" / "03_full_ft" / f"{results.run_id(spec.config())}.json"
    assert committed.exists(), "the run id of the committed record changed"
    rec = json.loads(committed.read_text())
    before, got = torch.get_num_threads(), {}
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            got[threads] = finetune.full(spec, "cpu")["reported"]
            assert torch.get_num_threads() == threads  # restored after the run
    finally:
        torch.set_num_threads(before)
    assert got[2] == got[1]
    if devices.isa() == rec.get("isa", "x86_64 avx512"):
        assert got[1] == rec["reported"]


def test_committed_records_learn_their_upstream_model_and_go_stale_when_it_changes(tmp_path):
    import sys

    sys.path.insert(0, str(paths.ROOT / "scripts"))
    import migrate_upstream_sha as mig

    from sparsenb import summary

    shipped = str(paths.ROOT / "outputs" / "upstream" / "mini")
    cfg = config.load("mini", {"checkpoint_root": shipped})
    for nb in ("02_linear_ft", "03_full_ft"):
        (tmp_path / nb).mkdir()
        for f in sorted((paths.ROOT / "outputs" / "results" / nb).glob("*.json"))[:2]:
            rec = json.loads(f.read_text())  # as committed before the migration: without upstream_sha256
            rec.pop("upstream_sha256", None)
            (tmp_path / nb / f.name).write_text(json.dumps(rec, indent=1))
    counts = mig.migrate(tmp_path, cfg)
    assert counts["added"] == 4 and counts["no_model"] == 0
    assert mig.migrate(tmp_path, cfg)["had"] == 4  # idempotent
    path = sorted((tmp_path / "03_full_ft").glob("*.json"))[0]
    rec = results.read(path)  # still a record of its run id
    man = upstream.checkpoints.read_manifest(cfg)
    seed = rec["config"]["upstream_seed"]
    row = man[(man.method == rec["method"]) & (man.sparsity == rec["sparsity"]) & (man.seed == seed)]
    assert rec["upstream_sha256"] == row.sha256.iloc[0]
    assert summary._upstream_changed(rec, {"checkpoint_root": shipped}, {}) is None
    changed = {**rec, "upstream_sha256": "0" * 64}
    assert "another upstream model" in summary._upstream_changed(changed, {"checkpoint_root": shipped}, {})
    spec = runs.unchecked(
        "03_full_ft",
        method=rec["method"],
        sparsity=rec["sparsity"],
        dataset=rec["dataset"],
        upstream_seed=seed,
        checkpoint_root=shipped,
    )
    assert not results.stale(spec, rec) and results.stale(spec, changed)


def test_an_edited_released_results_file_is_refused(tmp_path, monkeypatch):
    import shutil

    from sparsenb import errors, published, summary

    for f in published.PUBLISHED_FILES.values():
        shutil.copy(published.REFERENCE / f, tmp_path / f)
    monkeypatch.setattr(published, "REFERENCE", tmp_path)
    assert len(summary.load_published()) > 1000
    edited = tmp_path / "full_transfer_results.csv"
    edited.write_text(edited.read_text().replace("0.9", "0.8", 1))
    with pytest.raises(errors.UserError, match="full_transfer_results.csv is not the paper's released file"):
        summary.load_published()


def test_a_full_disk_inside_torch_save_is_one_line(tmp_path, monkeypatch):
    from sparsenb import errors

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(errors.UserError, match="no space left writing .*m.pt"):
        files.torch_save({"a": 1}, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())  # no truncated file, no temp file


def test_a_committed_table_may_grow_but_keeps_every_row(repo):
    kept = repo / "outputs" / "kept.csv"
    files.write_text(kept, "a\n0\n1\n")  # a new row (a new model in a manifest): kept rows unchanged
    evidence._tracked.cache_clear()
    with pytest.raises(evidence.EvidenceError):
        files.write_text(kept, "a\n0\n2\n")  # a row replaced
    assert kept.read_text() == "a\n0\n1\n"


def test_findings_say_whether_they_hold_the_papers_estimate():
    import pandas as pd

    from sparsenb import verdicts

    ours = pd.DataFrame(
        {"key": ["a", "a/literal", "b", "c"], "ci_low": [-1.0, 0.5, 1.0, float("nan")], "ci_high": [1.0, 2.0, 2.0, 1.0]}
    )
    paper = pd.DataFrame({"key": ["a", "b", "c"], "estimate": [0.2, float("nan"), 0.0]})
    out = verdicts.vs_paper(ours, paper)
    assert list(out.vs_paper) == ["compatible", "differs", "", ""]
    assert list(out.paper_estimate.fillna(-9)) == [0.2, 0.2, -9, 0.0]


def test_05_with_other_parameters_keeps_to_a_root_of_its_own():
    from sparsenb import speedup

    _, committed = runs.resolve("05_speedup")
    assert speedup.folder(committed) == paths.outputs() / "speedup" / "mini"
    _, other = runs.resolve("05_speedup", batch_size=7)
    own = paths.outputs() / "cache" / "overrides" / "batch_size=7"
    assert other.cfg["results_root"] == str(own / "results") and speedup.folder(other) == own / "speedup" / "mini"
    assert speedup.stem(other) == "shapes10-0.9-bs7"
    with pytest.raises(Exception, match="batch_size must be at least 1"):
        runs.resolve("05_speedup", batch_size=0)
