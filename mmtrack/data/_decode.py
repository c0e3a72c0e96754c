"""Decoding image files into uint8 tensors, once: a content-keyed cache of decoded datasets.

Preprocessing: PIL decode -> RGB -> centre crop to the largest square (a no-op for square images; CelebA's
178x218 faces are not squashed) -> PIL bilinear resize to S x S. PIL antialiases when it downscales. The decoded
uint8 tensors are cached once under `<cache dir>/datasets/<key>.pt` (`$MMTRACK_CACHE`, else the tracking
directory's `cache/`), so later runs decode no image. The key is a sha256 of the source files (relative names,
sizes, mtimes) and the preprocessing (image size, crop/resize, `PREPROCESS_VERSION`). Changing, adding or
removing a source file, or changing the image size, gives a new key. Old cache files can be deleted at any time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mmap
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

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
CHUNK = 256  # images a decoding worker takes at a time
PROCESSES_FROM = 2048  # images: fewer decode in this process (starting workers would cost more than it saves)
MAX_WORKERS = 8
_JOB: dict = {}  # the decoding job (paths, size, output) that forked workers inherit: nothing of it is pickled


def cache_dir() -> Path:
    """Where decoded datasets are cached: `<cache dir>/datasets` (`$MMTRACK_CACHE`, else the tracking
    directory's `cache/`)."""
    return settings.cache_dir() / "datasets"


def source_key(kind: str, base: str | Path, files: Sequence[str | Path], image_size: int) -> str:
    """Cache key of `kind` decoded at `image_size` from `files` (under `base`): sha256 of their names relative
    to `base`, sizes and mtimes, and of the preprocessing. On plain strings: pathlib costs seconds per 100k files."""
    h = hashlib.sha256(
        json.dumps(
            {"kind": kind, "size": image_size, "resize": RESIZE, "version": PREPROCESS_VERSION}, sort_keys=True
        ).encode()
    )
    cut = len(os.path.join(str(base), ""))
    for f in map(str, files):
        st = os.stat(f)
        h.update(f"{f[cut:].replace(os.sep, '/')}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"{kind}-{image_size}-{h.hexdigest()[:20]}"


def cached(key: str, build: Callable[[], dict]) -> dict:
    """The payload cached under `key` (a dict of tensors, lists and strings), building and saving it on a miss.
    Processes missing the same key at once (a sweep's workers on a cold cache) build it once: one builds under a
    file lock, the others wait for it and load its file."""
    path = cache_dir() / f"{key}.pt"
    payload = _load(path)
    if payload is not None:
        return payload
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        payload = _load(path)
        if payload is None:
            import torch

            payload = build()
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            torch.save(payload, tmp)
            os.replace(tmp, path)
            log.info("cached decoded dataset in %s", path)
    return payload


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    import torch

    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: rebuild it
        log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, exc)
        return None


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


def _decode_range(bounds: tuple[int, int]) -> tuple[list[tuple[str | None, str | None]], bytes]:
    """Decode `_JOB`'s files[start:stop] into its output (N, 3, S, S): per file (PIL mode, None), or (None, the
    error message) for a file PIL cannot read; and the sha256 of the decoded range. Runs in the decoding process
    or in a forked worker."""
    paths, size, out = _JOB["paths"], _JOB["size"], _JOB["out"]
    done: list[tuple[str | None, str | None]] = []
    for i in range(*bounds):
        try:
            arr, mode = read_image(paths[i], size)
        except MMTrackError as exc:
            out[i] = 0  # deterministic bytes (and digest) wherever the output memory came from
            done.append((None, exc.message))
            continue
        out[i] = arr.transpose(2, 0, 1)
        done.append((mode, None))
    return done, hashlib.sha256(memoryview(out[bounds[0] : bounds[1]])).digest()


def _workers(n: int) -> int:
    """Processes to decode `n` files with: 1 (this process) for few files, in a daemonic process (a sweep
    worker: it may not start processes), or off Linux (fork is unsafe on macOS and missing on Windows)."""
    if n < PROCESSES_FROM or sys.platform != "linux" or mp.current_process().daemon:
        return 1
    return max(1, min(MAX_WORKERS, settings.cpu_budget(), -(-n // CHUNK)))


class Decoded(NamedTuple):
    images: np.ndarray  # uint8 (N, 3, size, size)
    modes: list[str | None]  # each file's own PIL mode; None where it cannot be read
    errors: list[str | None]  # the one-line error of each unreadable file; None where it was decoded
    digests: list[bytes]  # sha256 of images[i * CHUNK : (i + 1) * CHUNK], for content fingerprints


def decode_files(paths: Sequence[str | Path], size: int) -> Decoded:
    """Decode image files into uint8 (N, 3, size, size): RGB, centre square crop, resized (`read_image`).

    Few files decode in this process. Many decode in forked worker processes that write into one anonymous
    shared mapping, so no image is pickled or copied back (threads don't help: a small JPEG decodes in ~100 µs,
    mostly Python-level work under the GIL). Each worker takes CHUNK files at a time."""
    n = len(paths)
    workers = _workers(n)
    shape = (n, 3, size, size)
    if workers > 1:  # MAP_SHARED | MAP_ANONYMOUS: inherited by forked workers, freed with the last reference
        out = np.frombuffer(mmap.mmap(-1, max(1, int(np.prod(shape)))), np.uint8)[: int(np.prod(shape))]
        out = out.reshape(shape)
    else:
        out = np.empty(shape, np.uint8)
    if n:
        log.info(
            "decoding %d images at %dx%d with %d process(es) (one-time; cached afterwards)", n, size, size, workers
        )
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    _JOB.update(paths=paths, size=size, out=out)  # set before the fork: the workers inherit it
    try:
        if workers == 1:
            results = [_decode_range(c) for c in chunks]
        else:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                results = list(pool.map(_decode_range, chunks))
    except BrokenProcessPool as exc:  # a worker was killed (out of memory, a signal): nothing is cached
        raise MMTrackError(
            f"a process decoding {n} images died ({exc}); free some memory, or decode in one process with "
            "MMTRACK_THREADS=1, and run again"
        ) from exc
    finally:
        _JOB.clear()
    done = [r for rs, _ in results for r in rs]
    return Decoded(out, [mode for mode, _ in done], [why for _, why in done], [digest for _, digest in results])


def decode_images(paths: list[Path], size: int) -> torch.Tensor:
    """`decode_files` as one uint8 tensor (N, 3, size, size); an unreadable file raises its one-line error.
    One-time work: callers cache the result."""
    import torch

    decoded = decode_files(paths, size)
    first = next((e for e in decoded.errors if e), None)
    if first:
        raise MMTrackError(first)
    return torch.from_numpy(decoded.images)


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
