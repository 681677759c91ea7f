"""Datasets: the registry (paper + mini), transforms, FFCV and torch loaders."""

from . import transforms
from .base import SPLITS, ArrayDataset, DataError, DatasetInfo
from .loaders import BACKENDS, check_beton, loader, write_beton
from .manifest import digest, manifest, write_manifest
from .paper import IMAGENET_SETS, FileDataset, imagenet_eval, real_labels
from .prepare import prepare
from .registry import REGISTRY, get, info, names

__all__ = [
    "BACKENDS",
    "IMAGENET_SETS",
    "REGISTRY",
    "SPLITS",
    "ArrayDataset",
    "DataError",
    "DatasetInfo",
    "FileDataset",
    "check_beton",
    "digest",
    "get",
    "imagenet_eval",
    "info",
    "loader",
    "manifest",
    "names",
    "prepare",
    "real_labels",
    "transforms",
    "write_beton",
    "write_manifest",
]
