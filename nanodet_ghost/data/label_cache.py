"""Label cache: what a source verified, saved so that the next build skips reading and checking.

Reading COCO's 118k-image json and checking every image's header and tail takes tens of seconds,
every run. The cache file holds what a source ends up with: its flat records (`data/records.py`),
class names, layout, and the skipped / repaired / flagged counts that make its summary line.

- Where: `<place>/.nanodet_cache/<stem>.<digest>.npz`, `<place>` being the folder of the
  annotations (the json's folder, the VOC or YOLO root); when that folder is read-only (or has
  no write bit, which root would ignore), `<cache>/labels/`, `<cache>` being
  `nanodet_ghost.paths.default_cache_dir()`.
- Format: numpy `.npz` read with `allow_pickle=False`; a json header is stored as a uint8 array.
- Valid while: the header matches (`LABEL_CACHE_VERSION`, a digest of the modules that read
  and check the annotations, the source's arguments) and every watched path has the size and
  mtime it had when the records were read. Sources watch their annotation files (the json, each
  xml / txt) and the folders the images lie in, so an edited annotation, an added or removed
  image or a touched folder means a rebuild; an image rewritten in place does not.
- A file that cannot be read is deleted and rebuilt, with a warning. No cache is written while a
  watched path changed less than `_RACY_S` before (an edit in the same timestamp tick could go
  unseen).
- Building a source never synchronises ranks by itself, so that code run on rank 0 alone (the
  final evaluation) can build one under an initialised process group. Code that every rank runs
  (the training DataModule's `setup`) wraps its builds in `rank_zero_first`: rank 0 reads or
  builds (and writes the cache) while the others wait at a barrier (one per call, on every
  rank, whatever happens), then the others read its file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Set, Tuple, TypeVar

import numpy as np

from nanodet_ghost.data.records import StringColumn
from nanodet_ghost.paths import default_cache_dir

logger = logging.getLogger(__name__)

# Bump when what a cache holds, or how sources read annotations, changes.
LABEL_CACHE_VERSION = 1
CACHE_SUBDIR = ".nanodet_cache"
# The modules whose code decides what a source holds; a change to any of them invalidates caches.
_READER_MODULES = ("base", "coco", "voc", "yolo", "image_io", "records", "label_cache")
_RACY_S = 1.0
_HEADER = "header"
_WATCH = ("watch_path_buffer", "watch_path_offsets", "watch_sizes", "watch_mtimes")

T = TypeVar("T")
# (header["source"], arrays) -> None; raises on content that does not fit
Restore = Callable[[Dict[str, Any], Dict[str, np.ndarray]], None]


@lru_cache(maxsize=1)
def reader_code_digest() -> str:
    """sha1 of the source files of `_READER_MODULES` (empty input when they cannot be read)."""
    digest = hashlib.sha1()
    folder = Path(__file__).resolve().parent
    for module in _READER_MODULES:
        try:
            digest.update((folder / f"{module}.py").read_bytes())
        except OSError:
            pass
    return digest.hexdigest()


def folders_between(top: str, files: Iterable[str]) -> Set[str]:
    """`top` and every folder from each file's folder up to `top` (paths joined onto `top`);
    for a file outside `top`, only its own folder."""
    found = {top}
    prefix = os.path.join(top, "")
    for path in files:
        folder = os.path.dirname(path)
        if not folder.startswith(prefix):
            found.add(folder)
            continue
        while folder not in found and len(folder) > len(top):
            found.add(folder)
            folder = os.path.dirname(folder)
    return found


def stat_paths(paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(sizes int64 [N], mtimes in ns int64 [N]); -1 and -1 for a path that does not exist."""
    sizes = np.full(len(paths), -1, dtype=np.int64)
    mtimes = np.full(len(paths), -1, dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def writable(folder: str) -> bool:
    """Whether to write into `folder`: it is a folder this process may write to and its mode
    keeps a write bit (root may write anywhere, but a folder made read-only is left alone)."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and bool(mode & 0o222) and os.access(folder, os.W_OK)


def rank_zero_first(fn: Callable[[], T]) -> T:
    """`fn()` on every rank, rank 0 first: the others wait at a barrier until rank 0 is done
    (also when it failed: its exception is raised after the barrier). Without an initialised
    `torch.distributed` process group it is just `fn()`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fn()
    rank = dist.get_rank()
    error: Optional[BaseException] = None
    result: Any = None
    if rank == 0:
        try:
            result = fn()
        except BaseException as exc:  # re-raised below, after the barrier every rank reaches
            error = exc
    dist.barrier()
    if error is not None:
        raise error
    if rank != 0:
        result = fn()
    return result


class LabelCache:
    """The cache file(s) of one source.

    Args:
        place: folder the cache is written beside (the annotations' folder).
        stem: first part of the file name, e.g. the json's name without extension.
        identity: json-able arguments that decide what the source holds (format, paths,
            class names, split, keep_background); `paths` (name -> path) are also resolved to
            absolute paths, so the same arguments from another working directory do not match.
    """

    def __init__(self, place: str, stem: str, identity: Dict[str, Any]) -> None:
        paths = identity.get("paths", {})
        self.identity = dict(identity, abspaths={k: os.path.abspath(v) for k, v in paths.items()})
        key = json.dumps(self.identity, sort_keys=True).encode()
        digest = hashlib.sha1(key).hexdigest()
        self.primary = os.path.join(place or ".", CACHE_SUBDIR, f"{stem}.{digest[:12]}.npz")
        self.fallback = os.path.join(str(default_cache_dir()), "labels", f"{stem}.{digest[:16]}.npz")
        self.path: Optional[str] = None  # the file read or written
        self._made_dir = False
        self._own_change: Tuple[str, int] = ("", -1)  # (folder, its mtime after our mkdir)

    def _header(self) -> Dict[str, Any]:
        return dict(version=LABEL_CACHE_VERSION, code=reader_code_digest(), identity=self.identity)

    # ------------------------------------------------------------------ reading
    def load(self, restore: Restore) -> bool:
        """Restore the source from the first valid cache file (beside the annotations, then in
        the user cache folder). False when none is valid; unreadable ones are warned about."""
        stale = []
        for path in (self.primary, self.fallback):
            if not os.path.isfile(path):
                continue
            start = time.perf_counter()
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
                reason = self._why_stale(header, arrays)
                if reason is None:
                    restore(header["source"], arrays)
            except Exception as exc:  # anything unreadable in a cache file means: rebuild it
                logger.warning("label cache %s is unreadable (%s: %s); it is deleted and the "
                               "annotations are read again", path, type(exc).__name__, exc)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            if reason is not None:
                stale.append(f"{path}: {reason}")
                continue
            self.path = path
            logger.info("labels read from the cache %s in %.2f s", path,
                        time.perf_counter() - start)
            return True
        for line in stale:
            logger.info("label cache out of date (%s); reading the annotations again", line)
        return False

    def _why_stale(self, header: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> Optional[str]:
        """Why a cache no longer holds what a build would give, or None when it still does."""
        expected = self._header()
        for key in ("version", "code", "identity"):
            if header.get(key) != expected[key]:
                return f"its {key} differs"
        paths = StringColumn(arrays.pop(_WATCH[0]), arrays.pop(_WATCH[1]))
        sizes, mtimes = arrays.pop(_WATCH[2]), arrays.pop(_WATCH[3])
        if not len(paths) == len(sizes) == len(mtimes):
            raise ValueError("the watched paths and their sizes / mtimes differ in length")
        now_sizes, now_mtimes = stat_paths(list(paths))
        changed = np.flatnonzero((now_sizes != sizes) | (now_mtimes != mtimes))
        if len(changed):
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            return f"{paths[int(changed[0])]} changed{more}"
        return None

    # ------------------------------------------------------------------ writing
    def prepare(self) -> None:
        """Create the folder beside the annotations before the source reads them, so that its
        creation is not mistaken for a change of the dataset folder at the next build."""
        folder = os.path.dirname(self.primary)
        if not os.path.isdir(folder) and writable(os.path.dirname(folder)):
            try:
                os.mkdir(folder)
                self._made_dir = True
                place = os.path.dirname(folder)
                self._own_change = (os.path.normpath(place), os.stat(place).st_mtime_ns)
            except OSError:
                pass

    def abandon(self) -> None:
        """Remove the folder `prepare` made when nothing will be written (the build failed)."""
        if self._made_dir:
            try:
                os.rmdir(os.path.dirname(self.primary))
            except OSError:
                pass

    def save(self, source_state: Dict[str, Any], arrays: Dict[str, np.ndarray],
             watched: Iterable[str]) -> Optional[str]:
        """Write the cache (beside the annotations, else in the user cache folder); the path
        written, or None (logged) when nothing could be written."""
        paths = sorted(set(watched))
        sizes, mtimes = stat_paths(paths)
        recent = mtimes > time.time_ns() - int(_RACY_S * 1e9)
        for i in np.flatnonzero(recent):  # the annotations' folder, changed by `prepare` alone
            if (os.path.normpath(paths[i]), int(mtimes[i])) == self._own_change:
                recent[i] = False
        if recent.any():
            logger.info("label cache not written: %s changed less than %.0f s ago",
                        paths[int(np.flatnonzero(recent)[0])], _RACY_S)
            return None
        watch = StringColumn.from_strings(paths)
        header = dict(self._header(), source=source_state)
        content = dict(arrays, **{
            _HEADER: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
            _WATCH[0]: watch.buffer, _WATCH[1]: watch.offsets, _WATCH[2]: sizes,
            _WATCH[3]: mtimes})
        primary_dir = os.path.dirname(self.primary)
        targets = [self.primary] if writable(primary_dir) else []
        errors = []
        for path in targets + [self.fallback]:
            try:
                _write_npz(path, content)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            self.path = path
            logger.info("labels cached in %s", path)
            return path
        logger.warning("label cache not written (%s)", "; ".join(errors))
        return None


def _write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write atomically: a temporary file in the same folder, then renamed over `path`."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from the dataset's other users
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

