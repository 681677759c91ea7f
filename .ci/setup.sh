#!/usr/bin/env bash
# Creates .venv with every package of the card and registers it as the Jupyter kernel `python3`.
# Idempotent: `make setup` only calls this when pyproject.toml or this file changed (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
  echo "sparsenb needs Python 3.11 (deepsparse 1.8.0, in .venv-deepsparse, has no wheel for newer ones); set PYTHON=/path/to/python3.11" >&2
  exit 1
}

# ffcv 1.0.2 compiles against OpenCV and libjpeg-turbo and loads them at run time.
APT_PKGS="pkg-config libopencv-dev libturbojpeg0-dev"
if ! (command -v pkg-config >/dev/null && pkg-config --exists opencv4 libturbojpeg); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages for ffcv: $APT_PKGS"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
  else
    echo "ffcv needs the system packages: $APT_PKGS" >&2
    echo "install them (e.g. sudo apt-get install $APT_PKGS) and run 'make setup' again" >&2
    exit 1
  fi
fi

# The integration tests' real parts (tests/integration): a one-node SLURM cluster (slurm-wlm, munge)
# and headless Chromium with its driver for JupyterLab. Installed as root; without root those tests skip.
REAL_PKGS="slurm-wlm munge chromium chromium-driver"
if ! dpkg -s $REAL_PKGS >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages for the integration tests: $REAL_PKGS"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $REAL_PKGS >/dev/null
  else
    echo "note: the SLURM and JupyterLab integration tests need $REAL_PKGS (as root: apt-get install); they skip without"
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
echo "== installing sparsenb and its dependencies into .venv (first time: a few minutes, ~6.5 GB)"
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/python -m pip check
# papermill, nbval and JupyterLab all run notebooks with the kernel named python3: make it this venv.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sparsenb)" >/dev/null
.venv/bin/python -c 'import numpy, torch, ffcv, openvino, onnxruntime.quantization; assert numpy.__version__.startswith("1.26"), numpy.__version__'
# DeepSparse in its own environment (sparsenb/deepsparse_worker.py runs in it): deepsparse 1.8.0 is the
# last installable wheel, end of life, and needs Python < 3.12, onnx < 1.15 and numpy < 2 (with numpy 2
# it silently returns wrong outputs: the worker refuses to start, tests/test_environment.py checks it)
[ -x .venv-deepsparse/bin/python ] || "$PY" -m venv .venv-deepsparse
echo "== installing deepsparse into .venv-deepsparse"
.venv-deepsparse/bin/python -m pip install -q deepsparse==1.8.0 numpy==1.26.4 onnx==1.14.1
.venv-deepsparse/bin/python -c 'import numpy, deepsparse; assert numpy.__version__.startswith("1.26"), numpy.__version__' 
touch .venv/.sparsenb-stamp
echo "== environments ready: .venv (kernel python3), .venv-deepsparse (sparsenb.engine's DeepSparse worker)"
