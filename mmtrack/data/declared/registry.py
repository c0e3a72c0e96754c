"""Registering declared datasets with the dataset registry (`mmtrack.data.base`), in this process and, through a
file under `<cache dir>/declared/<name>.json`, for later processes on this machine that know only the name."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from mmtrack.data import base
from mmtrack.data._decode import cache_dir
from mmtrack.data.base import DatasetInfo
from mmtrack.data.declared.decode import load_declared
from mmtrack.data.declared.layout import log
from mmtrack.data.declared.schema import NAME_RE
from mmtrack.errors import MMTrackError

_SPECS: dict[str, str] = {}  # name -> canonical JSON of the declaration registered in this process


def info(spec: dict) -> DatasetInfo:
    """What `mmtrack datasets list` shows of a declaration, without reading its data: categorical values found
    in the data show as ()."""
    groups: dict[str, tuple[str, ...]] = {}
    for g, gs in spec["groups"].items():
        groups[g] = tuple(gs["labels"] or gs["values"] or ())
    for cols in spec["intersections"]:
        groups["_".join(cols)] = ()
    fair = spec["fairness_group"]
    return DatasetInfo(
        groups, tuple(spec["ood"]), tuple(fair.split("/", 1)) if fair else None, needs_data=True, source=spec["source"]
    )


def _remembered(name: str) -> Path:
    return cache_dir().parent / "declared" / f"{name}.json"


def register_declared(spec: dict, remember: bool = True) -> str:
    """Register a normalised declaration under its name (again after a change; a built-in name is refused) and
    remember it on this machine. Returns the name. Cheap: reads no data."""
    name = spec["name"]
    canon = json.dumps(spec, sort_keys=True)
    if name in base.dataset_names() and name not in _SPECS:
        raise MMTrackError(f"{spec['source']}: dataset name {name!r} is a built-in dataset; choose another name")
    if _SPECS.get(name) != canon:
        if name in _SPECS:
            base.load_dataset.cache_clear()  # the same name now means other data
        _SPECS[name] = canon
        base.register(name, info(spec))(functools.partial(load_declared, spec))
    if remember:
        path = _remembered(name)
        try:
            if not path.is_file() or path.read_text() != canon:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                tmp.write_text(canon)
                os.replace(tmp, path)
        except OSError as exc:  # a read-only cache: this process still has it
            log.debug("could not remember declared dataset %s: %s", name, exc)
    return name


def resolve(name: str) -> bool:
    """A dataset name this machine saw declared (by a study): register it again from what was remembered."""
    if not NAME_RE.match(name):
        return False
    path = _remembered(name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False  # never declared on this machine: an unknown dataset
    except OSError as exc:
        raise MMTrackError(f"dataset {name}: cannot read its remembered declaration {path} ({exc.strerror})") from None
    try:
        spec = json.loads(text)
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or spec.get("name") != name:
        raise MMTrackError(
            f"dataset {name}: its remembered declaration {path} is damaged; delete that file and run the study "
            "that declares the dataset again (or `mmtrack datasets show STUDY.yaml`)"
        )
    register_declared(spec, remember=False)
    log.info("dataset %s: declared in %s (remembered in %s)", name, spec.get("source"), path)
    return True


def declared_specs() -> dict[str, dict]:
    """The declarations registered in this process, by name."""
    return {n: json.loads(s) for n, s in _SPECS.items()}
