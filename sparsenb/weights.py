"""Model weights in the checkpoint formats of the paper's sources: read any of them into our
architectures (IST's common format, torchvision, RigL's TF port, SparseML; wrappers and prefixes
stripped), write ours (IST format, sparse tensors stored compactly).

    model = weights.load_upstream("acdc/0.9.pth", "resnet50")     # format detected, zero set kept
    weights.read_upstream("acdc/0.9.pth", "resnet50").format      # ... and which it was: "ist", "str", ...
    weights.save_checkpoint(model, path, "mini_resnet_x", compact=True, method="acdc")
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import files, models
from .errors import UserError, check_choice

_MASK, _VALUES, _SHAPE = ".__compact_mask", ".__compact_values", ".__compact_shape"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded into the requested architecture; the message says why."""


def _harmless_globals() -> list:
    """Types that training scripts leave in checkpoints beside the weights (their arguments, numpy
    numbers): allowed by name for weights_only loading, which still refuses anything that runs code."""
    import argparse

    import numpy as np

    dtypes = {type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8)}
    return [argparse.Namespace, np.dtype, np.core.multiarray.scalar, *dtypes]


_SAFE_GLOBALS = _harmless_globals()


def _reason(e: Exception, limit: int = 240) -> str:
    """The line of a loading error that says what is wrong: no colour codes, none of torch's advice
    to switch the weights-only safety off, cut at a word."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not re.search(r"weights_only|Weights only load failed|torch\.load", ln)]
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _pickled(path: Path) -> list[bytes]:
    """The pickle streams of a checkpoint: `data.pkl` of torch's zip format, else every pickle of
    the file in turn (torch's legacy format is several in a row)."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith("data.pkl")]
    return [path.read_bytes()]


def code_globals(path: str | Path) -> list[str]:
    """`module.name` of every global a checkpoint's pickle would import (call or construct) that a
    weights-only load does not allow -- what would run if it were unpickled; [] when there is none
    or the file cannot be read as a pickle. Read with pickletools: nothing in the file is executed."""
    import _compat_pickle
    import io
    import pickletools

    from torch import _weights_only_unpickler as wou

    allowed = set(wou._get_allowed_globals()) | {f"{g.__module__}.{g.__qualname__}" for g in _SAFE_GLOBALS}
    found = []
    for raw in _safely(lambda: _pickled(Path(path)), []):
        stream, strings = io.BytesIO(raw), []
        while stream.tell() < len(raw):
            ops = _safely(lambda: list(pickletools.genops(stream)), None)
            if not ops:
                break
            for op, arg, _ in ops:
                if op.name in ("GLOBAL", "INST"):
                    found.append(tuple(arg.split(" ", 1)))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append((strings[-2], strings[-1]))
                elif isinstance(arg, str):
                    strings.append(arg)
    out = []
    for mod, name in found:  # torch pickles with protocol 2: Python 2 names (__builtin__, commands)
        mod, name = _compat_pickle.NAME_MAPPING.get((mod, name), (_compat_pickle.IMPORT_MAPPING.get(mod, mod), name))
        if f"{mod}.{name}" not in allowed:
            out.append(f"{mod}.{name}")
    return sorted(dict.fromkeys(out), key=lambda g: g.startswith("torch."))  # the foreign ones first


def _safely(fn, default):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a damaged file: the caller says so
        return default


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    """The one-line error of a checkpoint torch.load refused: one that would run code says so and names
    what it would call; anything else is called unreadable (truncated or corrupt)."""
    code = code_globals(path) if isinstance(e, pickle.UnpicklingError) else []
    if code:
        return CheckpointError(
            f"{path} would run code when loaded: its pickle calls {', '.join(code)}, which no checkpoint of "
            f"weights needs; refused for that reason (sparsenb never runs code from a checkpoint). Get the "
            f"weights alone from where it was made (torch.save(model.state_dict(), path)) or from its publisher"
        )
    return CheckpointError(
        f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_reason(e)}); if it is "
        f"truncated or corrupt, copy it again"
    )


def _unwrap(obj, path) -> tuple[dict, dict]:
    """Find the state dict inside a checkpoint object; returns (state_dict, model_config)."""
    config = {}
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        if "model_state_dict" in obj:  # IST common format
            config = obj.get("model_config") or {}
            obj = obj["model_state_dict"]
        elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        elif "model" in obj and isinstance(obj["model"], dict):
            obj = obj["model"]
        else:
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: no state dict found (expected a dict of tensors, or one under "
            f"'model_state_dict' / 'state_dict'); is this a model checkpoint?"
        )
    return dict(obj), config


def _strip_wrappers(sd: dict) -> dict:
    """`module.` prefixes (DataParallel) and IST wrapped layers (`._layer.weight` + `._weight_mask`)."""
    sd = {re.sub(r"^(module\.)+", "", k): v for k, v in sd.items()}
    out, maskmap = {}, {}
    for k, v in sd.items():
        if k.endswith("._weight_mask") or k.endswith("._bias_mask"):
            maskmap[k] = v
            continue
        out[k.replace("._layer.", ".")] = v
    for k, m in maskmap.items():  # a stored mask multiplies its weight (masks may be all ones)
        base, kind = k.rsplit("._", 1)
        target = f"{base}.{'weight' if kind == 'weight_mask' else 'bias'}"
        if target in out and out[target].shape == m.shape:
            out[target] = out[target] * m.to(out[target].dtype)
    return out


_RIGL_RULES = [
    (r"^initial_conv\.conv\.", "conv1."),
    (r"^initial_conv\.bn\.", "bn1."),
    (r"^(layer\d)\.block\.(\d+)\.conv(\d)\.conv\.", r"\1.\2.conv\3."),
    (r"^(layer\d)\.block\.(\d+)\.conv(\d)\.bn\.", r"\1.\2.bn\3."),
    (r"^(layer\d)\.block\.(\d+)\.shortcut\.conv\.", r"\1.\2.downsample.0."),
    (r"^(layer\d)\.block\.(\d+)\.shortcut\.bn\.", r"\1.\2.downsample.1."),
]


_SPARSEML_RULES = [
    (r"^input\.conv\.", "conv1."),
    (r"^input\.bn\.", "bn1."),
    (r"^sections\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}."),
    (r"\.identity\.conv\.", ".downsample.0."),
    (r"\.identity\.bn\.", ".downsample.1."),
    (r"^classifier\.fc\.", "fc."),
]


def _rename(sd: dict, rules) -> dict:
    out = {}
    for k, v in sd.items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def detect_format(sd: dict) -> str:
    """'rigl_tf' | 'sparseml' | 'torchvision' for a state dict with wrappers stripped."""
    keys = list(sd)
    if any(k.startswith("initial_conv.") or ".block." in k for k in keys):
        return "rigl_tf"
    if any(k.startswith(("sections.", "input.conv")) or k.startswith("classifier.fc") for k in keys):
        return "sparseml"
    return "torchvision"


def convert_state_dict(sd: dict) -> tuple[dict, str]:
    """Normalise any supported layout to this package's names; returns (state_dict, format)."""
    sd = _strip_wrappers(sd)
    fmt = detect_format(sd)
    if fmt == "rigl_tf":
        sd = _rename(sd, _RIGL_RULES)
    elif fmt == "sparseml":
        sd = _rename(sd, _SPARSEML_RULES)
    # STR: learnable thresholds have no place in a dense model; fc may be a 1x1 convolution
    dropped = [k for k in sd if k.split(".")[-1] in ("sparseThreshold",)]
    for k in dropped:
        del sd[k]
    if "fc.weight" in sd and sd["fc.weight"].dim() == 4:
        w = sd["fc.weight"]
        if w.shape[2:] != (1, 1):
            raise CheckpointError(f"fc.weight has shape {tuple(w.shape)}: a convolutional classifier must be 1x1")
        sd["fc.weight"] = w.flatten(1)
        fmt = "str" if fmt == "torchvision" else fmt
    elif dropped and fmt == "torchvision":
        fmt = "str"
    return sd, fmt


def _guess_arch(sd: dict) -> str | None:
    keys = {k for k in sd if not k.endswith("num_batches_tracked")}
    for arch in models.ARCHS:
        ref = {k for k in models.build(arch, 10).state_dict() if not k.endswith("num_batches_tracked")}
        if {k for k in keys if k.startswith("fc.")} and keys == ref:
            return arch
    return None


def compact_state_dict(sd: dict) -> dict:
    """Float tensors of >= 1,024 entries with over half zeros -> packed bit pattern + nonzero values."""

    out = {}
    for k, v in sd.items():
        if v.is_floating_point() and v.numel() >= 1024 and float((v == 0).float().mean()) > 0.5:
            nz = (v != 0).flatten()
            out[k + _MASK] = torch.from_numpy(np.packbits(nz.numpy()))
            out[k + _VALUES] = v.flatten()[nz].clone()
            out[k + _SHAPE] = torch.tensor(list(v.shape), dtype=torch.int64)
        else:
            out[k] = v
    return out


def expand_state_dict(sd: dict) -> dict:
    """Inverse of compact_state_dict (a dict without compact entries is returned as is)."""

    if not any(k.endswith(_MASK) for k in sd):
        return sd
    out = {k: v for k, v in sd.items() if not k.endswith((_MASK, _VALUES, _SHAPE))}
    for k in [k[: -len(_MASK)] for k in sd if k.endswith(_MASK)]:
        shape = tuple(int(i) for i in sd[k + _SHAPE])
        n = int(np.prod(shape))
        nz = torch.from_numpy(np.unpackbits(sd[k + _MASK].numpy())[:n].astype(bool))
        values = sd[k + _VALUES]
        full = torch.zeros(n, dtype=values.dtype)
        full[nz] = values
        out[k] = full.view(shape)
    return out


def _arch_fix(arch: str = "<arch>") -> str:
    """How a run gets another architecture (the finetuning notebooks have no `arch` parameter)."""
    return (
        f"a run's architecture is the profile's `arch` (params/<profile>.yaml; for one run "
        f'-p overrides \'{{"arch": "{arch}"}}\'; 01_upstream also takes -p arch {arch}), '
        f"in Python load_upstream(path, {arch!r})"
    )


@dataclass(frozen=True)
class UpstreamCheckpoint:
    """What `read_upstream` returns: the model (eval mode) and the format the file was in: "ist"
    (IST's common format: model_state_dict, maybe wrapped layers), or the names it came with
    ("torchvision", "str", "rigl_tf", "sparseml")."""

    model: nn.Module
    format: str


def load_upstream(path: str | Path, arch: str, num_classes: int | None = None) -> nn.Module:
    """The model of `read_upstream` (its format not needed)."""
    return read_upstream(path, arch, num_classes).model


def read_upstream(path: str | Path, arch: str, num_classes: int | None = None) -> UpstreamCheckpoint:
    """Load an upstream checkpoint of any supported format into `arch`; the format is detected.

    Formats: IST common format (`model_config` + `model_state_dict`, wrapped layers with masks,
    `module.` prefixes), plain or `state_dict`-nested torchvision dicts, STR (1x1-conv fc,
    sparseThreshold), RigL's TF port (names mapped; the model gets RigL's padded max-pool), SparseML.
    Loaded with weights_only=True. Every tensor must match: a missing, extra or mis-shaped tensor
    raises CheckpointError naming the keys."""
    check_choice("arch", arch, models.ARCHS)
    path = Path(path)
    obj = _read(path)
    raw, model_config = _unwrap(obj, path)
    raw = expand_state_dict(raw)
    ist = (isinstance(obj, dict) and "model_state_dict" in obj) or any(k.endswith("._weight_mask") for k in raw)
    sd, fmt = convert_state_dict(raw)
    cfg_arch = str(model_config.get("arch", "")).lower()
    if cfg_arch and arch.split("_")[0] not in cfg_arch.replace("_", ""):
        raise CheckpointError(
            f"{path} says it is a {model_config['arch']!r} (model_config.arch), not {arch!r}: {_arch_fix()}"
        )
    if "fc.weight" not in sd:
        raise CheckpointError(
            f"{path}: no classifier weights (fc.weight) after conversion from format {fmt!r}; "
            f"keys start with {sorted(sd)[:5]}"
        )
    target_arch = "resnet50_rigl" if (fmt == "rigl_tf" and arch == "resnet50") else arch
    model = models.build(target_arch, num_classes or sd["fc.weight"].shape[0])
    ref = model.state_dict()
    _check_fit(path, fmt, target_arch, sd, ref)
    model.load_state_dict(OrderedDict((k, sd.get(k, ref[k])) for k in ref))
    # IST's format has torchvision names inside
    return UpstreamCheckpoint(model.eval(), "ist" if ist and fmt == "torchvision" else fmt)


def _read(path: Path):
    """The object saved at `path` (weights_only); a missing, empty or unreadable file is one
    CheckpointError naming the fix."""
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: check checkpoint_root in params/<profile>.yaml "
            f"(expected <checkpoint_root>/<method>/<sparsity>.pth)"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the copy or download did not finish; copy it again")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _unreadable(path, e) from None  # torch's own hint (weights_only=False) would run the file's code


def _check_fit(path: Path, fmt: str, target_arch: str, sd: dict, ref: dict) -> None:
    """One CheckpointError naming the missing, unexpected and mis-shaped tensors of the converted
    state dict `sd` against the model's `ref` (and the architecture it looks like), if any."""
    missing = [k for k in ref if k not in sd and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in ref]
    shape = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(ref[k].shape)}"
        for k in ref
        if k in sd and sd[k].shape != ref[k].shape
    ]
    if not (missing or extra or shape):
        return
    guess = _guess_arch(sd)
    hint = (
        f"it looks like a {guess!r} checkpoint: {_arch_fix(guess)}"
        if guess and guess != target_arch
        else "is this checkpoint of another architecture, or a format sparsenb does not know?"
    )
    parts = [f"{path} (format {fmt!r}) does not fit {target_arch!r}; {hint}."]
    if missing:
        parts.append(f"missing {len(missing)} tensors, e.g. {missing[:5]}")
    if extra:
        parts.append(f"{len(extra)} unexpected tensors, e.g. {extra[:5]}")
    if shape:
        parts.append(f"{len(shape)} shape mismatches, e.g. {shape[:3]}")
    raise CheckpointError("\n  ".join(parts))


def save_checkpoint(model: nn.Module, path: str | Path, arch: str, compact: bool = False, **config) -> Path:
    """Save in the IST common format ({'model_config', 'model_state_dict'}), which load_upstream
    reads; written to a temp file and renamed. `compact`: tensors that are mostly zero are stored as
    their packed nonzero pattern + nonzero values (`<name>.__compact_mask` / `__compact_values`), a
    third of the size at 80% sparsity; load_upstream restores them bit-exactly."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if compact:
        sd = compact_state_dict(sd)
    return files.torch_save({"model_config": {"arch": arch, **config}, "model_state_dict": sd}, path)
