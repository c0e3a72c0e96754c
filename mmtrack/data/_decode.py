"""Decoding image files into uint8 tensors, once: a content-keyed cache of decoded datasets.

Preprocessing: PIL decode -> RGB -> centre crop to the largest square (a no-op for square images; CelebA's
178x218 faces are not squashed) -> PIL bilinear resize to S x S. PIL antialiases when it downscales. The decoded
uint8 tensors are cached once under `<cache dir>/datasets/<key>.pt` (`$MMTRACK_CACHE`, else the tracking
directory's `cache/`), so later runs decode no image. The key is a sha256 of the source files (relative names,
sizes, mtimes) and the preprocessing (image size, crop/resize, `PREPROCESS_VERSION`). Changing, adding or
removing a source file, or changing the image size, gives a new key. Old cache files can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch
from mmtrack import settings
from mmtrack.data.base import DataOptions, fingerprint
from mmtrack.errors import MMTrackError

log = logging.getLogger(__name__)

PREPROCESS_VERSION = "realdata-v1"  # bump when decoding or resizing changes: every cache key changes
RESIZE = "center-square-crop+pil-bilinear"
CHUNK = 256  # images decoded per thread-pool task


def cache_dir() -> Path:
    """Where decoded datasets are cached: `<cache dir>/datasets` (`$MMTRACK_CACHE`, else the tracking
    directory's `cache/`)."""
    return settings.cache_dir() / "datasets"


def source_key(kind: str, base: Path, files: list[Path], image_size: int) -> str:
    """Cache key of `kind` decoded at `image_size` from `files`: sha256 of their names relative to `base`,
    sizes and mtimes, and of the preprocessing."""
    h = hashlib.sha256(
        json.dumps(
            {"kind": kind, "size": image_size, "resize": RESIZE, "version": PREPROCESS_VERSION}, sort_keys=True
        ).encode()
    )
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"{kind}-{image_size}-{h.hexdigest()[:20]}"


def cached(key: str, build: Callable[[], dict]) -> dict:
    """The payload cached under `key` (a dict of tensors, lists and strings), building and saving it on a miss."""
    import torch

    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, exc)
    payload = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    log.info("cached decoded dataset in %s", path)
    return payload


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image file -> uint8 (size, size, 3): RGB, centre square crop, PIL bilinear (antialiased) resize."""
    return read_image(path, size)[0]


def read_image(path: Path, size: int) -> tuple[np.ndarray, str]:
    """`decode_image`, plus the file's own PIL mode (`RGB`, `L`, `RGBA`, `P`, `CMYK`, ...) before conversion."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())
        raise MMTrackError(
            f"cannot decode image file {path} ({type(exc).__name__}: {reason}); remove or replace this file"
        ) from exc
    w, h = im.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8), mode


def decode_images(paths: list[Path], size: int) -> torch.Tensor:
    """Decode image files into one uint8 tensor (N, 3, size, size), with a small thread pool (PIL releases
    the GIL while decoding). One-time work: callers cache the result."""
    import torch

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    if paths:
        log.info(
            "decoding %d images from %s at %dx%d (one-time; cached afterwards)", len(paths), paths[0].parent, size, size
        )

    def chunk(start: int) -> None:  # chunks, not one task per file: small images decode in ~100 µs
        for i in range(start, min(start + CHUNK, len(paths))):
            out[i] = decode_image(paths[i], size)

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        list(pool.map(chunk, range(0, len(paths), CHUNK)))
    finally:
        pool.shutdown(cancel_futures=True)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def decoded(
    kind: str,
    base: Path,
    sources: list[Path],
    size: int,
    inputs: Callable[[], tuple[list[Path], dict[str, torch.Tensor]]],
) -> dict:
    """The cached payload {"images", "names", "content", **tensors} of a dataset part, keyed by `sources`.

    On a cache miss `inputs()` returns the image files to decode (in order) and extra tensors to store (e.g.
    labels read from a label file that is among `sources`). "content" hashes images, names and tensors."""

    def build() -> dict:
        files, tensors = inputs()
        images = decode_images(files, size)
        names = [f.relative_to(base).as_posix() for f in files]
        content = fingerprint(images, *(tensors[k] for k in sorted(tensors)), extra=f"{kind}\n" + "\n".join(names))
        return {"images": images, "names": names, "content": content, **tensors}

    return cached(source_key(kind, base, sources, size), build)


def resolve_image_size(options: DataOptions, default: int) -> int:
    size = default if options.image_size is None else options.image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise MMTrackError(f"image_size must be an integer >= 8, got {size!r}")
    return size
