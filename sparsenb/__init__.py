"""sparsenb: how well do sparse ImageNet models transfer? -- a thin package under notebooks."""

import os as _os

# deepsparse/sparsezoo and onnxruntime must never try the network.
_os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
