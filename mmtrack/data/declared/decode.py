"""Checking and decoding a plan's images: `check` opens every header (unless the decoded cache exists) so bad
files fail before anything trains; `load_declared` decodes through `mmtrack.data._decode`'s content-keyed cache
and builds the Dataset with its fingerprint (decoded pixels, relative names, labels, split and group codes)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
from mmtrack.data._decode import (
    CHUNK,
    PREPROCESS_VERSION,
    RESIZE,
    cache_dir,
    cached,
    decode_files,
    resolve_image_size,
    source_key,
)
from mmtrack.data.base import DataOptions, Dataset, Split, fingerprint, to_grayscale
from mmtrack.data.declared.layout import log, note
from mmtrack.data.declared.plan import Part, Plan, plan
from mmtrack.errors import MMTrackError

DECLARED_VERSION = "declared-v1"  # bump when planning (split, groups) changes meaning: fingerprints change


def _base_dir(part: Part) -> str:
    """The files' common folder (that of their folders: ~10x faster than of 100k files)."""
    if len(part.files) > 1:
        return os.path.commonpath(list({os.path.dirname(f) for f in part.files}))
    return os.path.dirname(part.files[0])


def _key(part: Part, spec: dict, size: int) -> str:
    return source_key(f"declared-c{spec['channels']}", _base_dir(part), part.files, size)


def _open_header(path: str) -> tuple[str | None, str | None]:
    """(PIL mode, None) of an image file, or (None, why it cannot be read); reads the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:80]}"


def _unreadable(part: Part, failures: list[tuple[str, str]]) -> MMTrackError:
    listed = ", ".join(f"{f} ({why})" for f, why in failures[:2]) + (", ..." if len(failures) > 2 else "")
    return MMTrackError(
        f"{len(failures)} of {len(part.files)} image file(s) of {part.what} cannot be read as images, "
        f"e.g. {listed}; remove or replace them"
    )


def _mode_note(part: Part, modes: dict[str, int], channels: int) -> str | None:
    if len(modes) <= 1:
        return None  # one mode throughout: nothing mixed
    listed = ", ".join(f"{m} {n}" for m, n in sorted(modes.items(), key=lambda kv: (-kv[1], kv[0])))
    return (
        f"{part.what}: mixed image modes ({listed} of {len(part.files)}): converted to "
        f"{'RGB' if channels == 3 else 'grayscale'}"
    )


def _reason(path: str, message: str) -> str:
    """The reason in `read_image`'s "cannot decode image file PATH (WHY); remove or replace this file"."""
    return message.split(f"{path} (", 1)[-1].rsplit("); remove", 1)[0][:80]


def check(spec: dict, image_size: int | None = None) -> Plan:
    """`plan()`, then open every image's header (unless its decoded cache exists): unreadable files fail now,
    with counts and names; mixed image modes are noted. What a study runs before anything trains."""
    p = plan(spec)
    size = resolve_image_size(DataOptions(image_size=image_size), spec["image_size"])
    for part in [p.main, *p.ood.values()]:
        if (cache_dir() / f"{_key(part, spec, size)}.pt").is_file():
            continue
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            results = list(pool.map(_open_header, part.files))
        finally:
            pool.shutdown(cancel_futures=True)
        failures = [(f, why) for f, (_, why) in zip(part.files, results) if why]
        if failures:
            raise _unreadable(part, failures)
        message = _mode_note(part, Counter(mode for mode, _ in results), spec["channels"])
        if message:
            note(p.notes, message)
    return p


def _decode(part: Part, spec: dict, size: int) -> dict:
    """The cached payload {images, names, content, modes} of a part, decoding (once) on a cache miss."""
    import torch

    def build() -> dict:
        log.info("decoding %s (one-time; cached afterwards)", part.what)
        out, modes_of, errors, digests = decode_files(part.files, size)
        failures = [(f, _reason(f, e)) for f, e in zip(part.files, errors) if e]
        if failures:
            raise _unreadable(part, failures)
        cut = len(os.path.join(_base_dir(part), ""))
        names = [f[cut:].replace(os.sep, "/") for f in part.files]
        h = hashlib.sha256(f"{DECLARED_VERSION}\n{size}\n".encode() + "\n".join(names).encode())
        if spec["channels"] == 1:  # a chunk at a time (a float copy of the whole set would be 4x its size)
            for i, start in enumerate(range(0, len(out), CHUNK)):
                out[start : start + CHUNK] = to_grayscale(torch.from_numpy(out[start : start + CHUNK])).numpy()
                digests[i] = hashlib.sha256(memoryview(out[start : start + CHUNK])).digest()
        for digest in digests:  # one per CHUNK images
            h.update(digest)
        return {
            "images": torch.from_numpy(out),
            "names": names,
            "content": h.hexdigest()[:16],
            "modes": json.dumps(dict(Counter(modes_of)), sort_keys=True),
        }

    payload = cached(_key(part, spec, size), build)
    message = _mode_note(part, json.loads(payload.get("modes", "{}")), spec["channels"])
    if message:
        log.warning("%s", message)
    return payload


def _split(images: torch.Tensor, part: Part, idx: np.ndarray) -> Split:
    import torch

    t = torch.from_numpy(idx)
    return Split(
        images[t],
        torch.from_numpy(part.labels[idx]),
        {a: torch.from_numpy(c[idx]) for a, c in part.groups.items()},
        dict(part.group_values),
    )


def load_declared(spec: dict, options: DataOptions) -> Dataset:
    """The Dataset of a declaration: planned from its files, decoded through the cache."""
    import torch

    size = resolve_image_size(options, spec["image_size"])
    p = plan(spec)
    payload = _decode(p.main, spec, size)
    images = payload["images"]
    train_idx, test_idx = np.flatnonzero(p.main.split == 0), np.flatnonzero(p.main.split == 1)
    ood, contents = {}, [f"main:{payload['content']}"]
    for o, part in p.ood.items():
        op = _decode(part, spec, size)
        ood[o] = Split(op["images"], torch.from_numpy(part.labels))
        contents.append(f"{o}:{op['content']}:{fingerprint(torch.from_numpy(part.labels))}")
    codes = [torch.from_numpy(p.main.labels), torch.from_numpy(p.main.split)]
    codes += [torch.from_numpy(p.main.groups[a]) for a in p.main.groups]
    meta = json.dumps(
        {
            "version": [DECLARED_VERSION, PREPROCESS_VERSION, RESIZE],
            "size": size,
            "channels": spec["channels"],
            "classes": p.classes,
            "split": p.split_how,
            "groups": p.main.group_values,
            "codes": fingerprint(*codes),
            "parts": contents,
        },
        sort_keys=True,
    )
    fair = spec["fairness_group"]
    return Dataset(
        name=spec["name"],
        classes=p.classes,
        train=_split(images, p.main, train_idx),
        test=_split(images, p.main, test_idx),
        ood=ood,
        fingerprint=hashlib.sha256(meta.encode()).hexdigest()[:16],
        fairness_group=tuple(fair.split("/", 1)) if fair else None,
        description=(spec["description"] + " · " if spec["description"] else "")
        + f"declared in {spec['source']}: {p.main.what}, "
        f"{size}x{size} {'RGB' if spec['channels'] == 3 else 'grayscale'}, split: {p.split_how} "
        f"(OOD: {', '.join(ood) or 'none'})",
    )
