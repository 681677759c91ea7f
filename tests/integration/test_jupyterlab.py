"""JupyterLab in a real browser: `jupyter lab` from the project's venv on a free localhost port with a
token, Debian's headless Chromium driven by selenium through Debian's chromedriver (nothing downloads a
browser), notebooks/02_linear_ft.ipynb opened, Run > Run All Cells with the kernel python3, and the
result line read off the page. The notebook runs with its own defaults at the notebooks' test scale
(half-epoch upstream models: the copy's parameters cell sets `overrides`, as a user edits it); the
server's root is a copy of notebooks/ so that nothing the browser does (autosave, checkpoints) touches
the repository."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import NOTEBOOK_OVERRIDES, build_upstream_cli
from sparsenb.config import ROOT
from sparsenb.paths import slug

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RESULT = re.compile(r"gmp 90% \(upstream seed 0\) on shapes10: reported (0\.\d{4}) .* run (\w+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_scale(path: Path) -> None:
    """The notebooks' test scale as the `overrides` value of the notebook's parameters cell."""
    from conftest import NOTEBOOK_OVERRIDES

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = [
        *cell["source"][:-1],
        cell["source"][-1].rstrip("\n") + "\n",
        f"overrides = {NOTEBOOK_OVERRIDES!r}\n",
    ]
    path.write_text(json.dumps(nb, indent=1))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over a copy of notebooks/, its settings and outputs under tmp_path."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: `make setup` as root installs chromium and chromium-driver")
    pytest.importorskip("selenium", reason="selenium is a dev dependency: make setup")
    root = tmp_path / "work"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _test_scale(root / "notebooks" / "02_linear_ft.ipynb")
    port, token = _free_port(), "sparsenb-test-token"
    # a user's environment (no MPLBACKEND=Agg, no SPARSENB_PROGRESS of the test harness) + the test scale
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "SPARSENB_PROGRESS")}
    env = {
        **env,
        "SPARSENB_OUTPUTS": str(tmp_path / "outputs"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    build_upstream_cli(env)  # 02 loads its upstream model (dense, gmp 90%), never trains one
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline and f"127.0.0.1:{port}" not in (tmp_path / "jupyterlab.log").read_text():
        assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
        time.sleep(0.5)
    try:
        yield {"url": f"http://127.0.0.1:{port}/lab/tree/notebooks/02_linear_ft.ipynb?token={token}", "tmp": tmp_path}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))  # what the page showed last (a failure's state)
        driver.quit()


def test_run_all_cells_of_02_in_jupyterlab(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 600)
    t0 = time.time()
    browser.get(lab["url"])
    # the notebook is open and its kernel (python3, from the notebook's metadata) is idle
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    wait.until(lambda d: "Python 3 (sparsenb)" in d.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar").text)
    wait.until(lambda d: "Python 3 (sparsenb) | Idle" in d.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text)
    # Run > Run All Cells, as a user clicks it
    run_menu = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text.strip() == "Run")
    run_menu.click()
    item = "//li[contains(@class, 'lm-Menu-item')][.//div[@class='lm-Menu-itemLabel' and text()='Run All Cells']]"
    wait.until(ec.element_to_be_clickable((By.XPATH, item))).click()
    started = time.time()

    def result_line(d):
        outputs = " ".join(o.text for o in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
        assert "Traceback" not in outputs and "Warning" not in outputs, outputs[-3000:]  # no cell failed or warned
        return RESULT.search(outputs)

    # a bound on a hang, not a race: on a loaded 2-core machine the run takes minutes (measured up to 5)
    found = WebDriverWait(browser, 1500).until(result_line)
    # the last cell (the curve figure) has rendered too
    img = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", img[0])
    time.sleep(0.5)
    browser.save_screenshot(str(lab["tmp"] / "02_linear_ft.png"))
    print(f"JupyterLab: page ready in {started - t0:.0f} s, Run All Cells {time.time() - started:.0f} s")
    # what the page printed is what the run recorded
    own = (
        lab["tmp"] / "outputs" / "cache" / "overrides" / slug(NOTEBOOK_OVERRIDES)
    )  # a run with overrides: its own root
    record = own / "results" / "02_linear_ft" / f"{found.group(2)}.json"
    rec = json.loads(record.read_text())
    assert f"{rec['reported']:.4f}" == found.group(1) and rec["method"] == "gmp" and rec["dataset"] == "shapes10"
    assert (lab["tmp"] / "02_linear_ft.png").stat().st_size > 10_000
