"""Datasets: the registry (paper + mini), transforms, FFCV and torch loaders."""
from .registry import REGISTRY, ArrayDataset, DataError, DatasetInfo, get, info, names  # noqa: F401
from .loaders import BACKENDS, check_beton, loader, write_beton  # noqa: F401
from . import transforms  # noqa: F401
from .manifest import digest, manifest, write_manifest  # noqa: F401,E402
from .prepare import prepare  # noqa: F401,E402
from .paper import IMAGENET_SETS, FileDataset, imagenet_eval, real_labels  # noqa: F401,E402
