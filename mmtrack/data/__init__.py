"""Datasets: the interface and registry (`base`), one module per dataset, datasets declared in files (`declared/`:
your own image folder or CSV manifest, no code) and the decoding cache (`_decode`).

Importing this package registers every built-in dataset (timm-style: dataset modules import the registry,
this package imports the dataset modules), so the registry is never half-populated.
"""

from mmtrack.data import cifar, declared, digits, utkface  # noqa: F401 - registers the built-in datasets (and resolver)
from mmtrack.data.base import (
    SKEW_GROUPS,
    DataOptions,
    Dataset,
    DatasetInfo,
    Split,
    check_dataset_name,
    data_dir,
    dataset_info,
    dataset_names,
    fingerprint,
    load_dataset,
    register,
)
from mmtrack.data.declared import register_declared

__all__ = [
    "SKEW_GROUPS",
    "DataOptions",
    "Dataset",
    "DatasetInfo",
    "Split",
    "check_dataset_name",
    "data_dir",
    "dataset_info",
    "dataset_names",
    "fingerprint",
    "load_dataset",
    "register",
    "register_declared",
]
