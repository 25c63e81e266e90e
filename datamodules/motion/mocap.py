"""``MocapPoses``: real motion capture (BVH folders) seen by random virtual cameras.

Each split is a set of BVH files picked from one or more folders by file lists, name patterns and
content / style labels. Files are parsed (:mod:`datamodules.motion.bvh`), mapped onto ``H36M_17`` in mm
with Z up (:mod:`datamodules.motion.rigs`), optionally resampled to a target frame rate, and handed to
:class:`datamodules.poses.PoseDataModule`, which places the cameras and serves the batches.

Parsed clips are cached per file under ``cache_dir`` (default ``~/.cache/posebench/mocap``), keyed
by the file's content hash and the rig's fingerprint, so a second start skips parsing and a changed
file or rig is parsed again. Cache files are written atomically (temporary file, then rename), so
concurrent runs and interrupted runs never leave a half-written entry.

Labels: a clip's *content* (its action; the batch key ``action`` indexes ``action_names``) and
*style* come from, in order of preference, a Bandai ``.json`` beside the file (content and style
ids resolved through ``cfg/content_label.txt`` and ``cfg/style_label.txt``), else the first of
``label_patterns`` that matches the file name:

* ``dataset-N_<content>_<style>_<take>`` (Bandai Namco),
* ``<action>_<train|test>_<n>`` (the converted CMU clips; style ``cmu``),
* ``<subject>_<trial>`` (CMU trials; content ``unlabelled``, style ``cmu-<subject>``).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from functools import cached_property
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..contract import register
from ..poses import PoseClips, PoseDataModule
from .bvh import parse_bvh
from .rigs import RIGS, detect_rig, get_rig

#: Bump when the reader or the cached layout changes (rig changes are caught by their fingerprint).
CACHE_VERSION = 1
BVH_SUFFIXES = (".bvh", ".bvh.gz")

DEFAULT_LABEL_PATTERNS = (
    r"^dataset-\d+_(?P<content>[^_]+)_(?P<style>[^_]+)_(?P<take>\d+)$",
    r"^(?P<content>.+)_(?:train|test)_(?P<take>\d+)$",
    r"^(?P<subject>\d+)_(?P<take>\d+)$",
)

DATA_HELP = """\
Where the data comes from:
  - Bandai Namco Research Motiondataset (CC BY-NC 4.0): https://github.com/BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset
    (dataset-1/data and dataset-2/data hold the BVH files, optionally gzip-compressed as *.bvh.gz);
  - CMU Graphics Lab Motion Capture Database: http://mocap.cs.cmu.edu (BVH conversions, e.g. the cgspeed release).
Point the config at the folder: data.init_args.<split>.roots: [path/to/folder] (relative paths are relative to
the directory you run from, normally the repository root; the configs expect ../shared/data/bandai and
../shared/data/cmu)."""


@dataclass
class MocapSplit:
    """Which BVH files form one split. Every filter that is given must pass.

    Attributes:
        roots: folders searched recursively for ``*.bvh`` / ``*.bvh.gz`` (or single files).
        files: glob patterns on the file stem or on the path relative to its root
            (e.g. ``dataset-2_walk_*`` or ``dataset-1/data/*``); empty: all files.
        include: regular expressions searched in the stem; at least one must match (empty: all).
        exclude: regular expressions searched in the stem; none may match.
        contents: glob patterns on the content label (empty: all).
        styles: glob patterns on the style label (empty: all).
        exclude_contents: glob patterns on the content label that drop a file.
        exclude_styles: glob patterns on the style label that drop a file.
    """

    roots: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    exclude_contents: list[str] = field(default_factory=list)
    exclude_styles: list[str] = field(default_factory=list)

    @classmethod
    def coerce(cls, value: MocapSplit | dict | None, split: str) -> MocapSplit | None:
        if value is None or isinstance(value, MocapSplit):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"MocapPoses option {split} must be a mapping of split options, got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"MocapPoses option {split} has unknown keys {unknown}; known keys are {sorted(known)}")
        value = {k: [v] if isinstance(v, str) else list(v) for k, v in value.items()}
        return cls(**value)


@dataclass(frozen=True)
class ClipFile:
    """One BVH file of a split and its labels."""

    path: Path
    stem: str
    content: str
    style: str


@dataclass
class Clip:
    """A parsed clip: ``joints`` (T, 17, 3) float32 world mm, Z up, at the file's frame rate."""

    joints: np.ndarray
    floor_mm: float  # 5th percentile over frames of the lowest foot point's height
    frame_time: float  # seconds
    rig: str


def bvh_stem(path: Path) -> str:
    name = path.name
    for suffix in (".bvh.gz", ".bvh"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_bvh_files(root: Path) -> list[Path]:
    """Sorted ``*.bvh`` / ``*.bvh.gz`` files under ``root`` (or ``[root]`` if it is such a file)."""
    if root.is_file():
        return [root] if root.name.lower().endswith(BVH_SUFFIXES) else []
    return sorted(p for p in root.rglob("*") if p.name.lower().endswith(BVH_SUFFIXES) and p.is_file())


def resample_indices(num_frames: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """Frame indices that resample a clip to ``target_fps`` by taking the frame nearest to each output time.

    ``30 -> 10`` Hz keeps frames 0, 3, 6, ...; non-integer ratios (``30 -> 25``) pick the frame
    closest to each output time. No interpolation: every output frame is a real captured pose.
    """
    if target_fps is None:
        return np.arange(num_frames)
    if target_fps > source_fps * 1.001:
        raise ValueError(f"cannot resample a {source_fps:g} Hz clip up to {target_fps:g} Hz; lower the fps option "
                         "or set it to null to keep every frame")  # fmt: skip
    step = source_fps / target_fps
    count = int(np.floor((num_frames - 1) / step + 1e-9)) + 1 if num_frames else 0
    return np.minimum(np.rint(np.arange(count) * step).astype(np.int64), num_frames - 1)


# -- labels ---------------------------------------------------------------------------------------


def _read_labels(path: Path) -> list[str]:
    """Lines of a Bandai label file without their ``dataset-N_`` prefix (``dataset-1_walk`` -> ``walk``)."""
    return [re.sub(r"^dataset-\d+_", "", line.strip()) for line in path.read_text().splitlines() if line.strip()]


def _label_files(path: Path) -> tuple[list[str], list[str]] | None:
    """Bandai ``cfg/content_label.txt`` and ``cfg/style_label.txt`` of the dataset holding ``path``."""
    for parent in list(path.parents)[:3]:
        cfg = parent / "cfg"
        if (cfg / "content_label.txt").is_file() and (cfg / "style_label.txt").is_file():
            return _read_labels(cfg / "content_label.txt"), _read_labels(cfg / "style_label.txt")
    return None


def clip_labels(
    path: Path, patterns: tuple[str, ...] = DEFAULT_LABEL_PATTERNS, _cfg_cache: dict | None = None
) -> tuple[str, str]:
    """``(content, style)`` of a BVH file, from a Bandai ``.json`` beside it or from its name."""
    stem = bvh_stem(path)
    sidecar = path.with_name(stem + ".json")
    if sidecar.is_file():
        cache = {} if _cfg_cache is None else _cfg_cache
        if path.parent not in cache:
            cache[path.parent] = _label_files(path)
        labels = cache[path.parent]
        if labels is not None:
            try:
                ids = json.loads(sidecar.read_text())
                return labels[0][int(ids["content"])], labels[1][int(ids["style"])]
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise ValueError(
                    f"{sidecar}: expected {{'content': i, 'style': j}} indexing the cfg label files ({err!r}); "
                    "fix or delete it to label the clip by its name"
                ) from None
    for pattern in patterns:
        match = re.match(pattern, stem)
        if match:
            groups = match.groupdict()
            content = groups.get("content") or "unlabelled"
            style = groups.get("style") or (f"cmu-{groups['subject']}" if groups.get("subject") else "cmu")
            return content, style
    return "unlabelled", "unlabelled"


# -- parsing and the cache --------------------------------------------------------------------------


def _convert(data: bytes, source: str, rig_name: str) -> Clip:
    """Parse one file's bytes (plain or gzip) and map it onto the target skeleton with its rig."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    bvh = parse_bvh(data, source=source)
    rig = detect_rig(bvh.names, source) if rig_name == "auto" else get_rig(rig_name)
    joints, lowest = rig.convert(bvh)
    floor = float(np.percentile(lowest, 5)) if len(lowest) else 0.0
    return Clip(joints.astype(np.float32), floor, bvh.frame_time, rig.name)


def _cache_key(data: bytes, rig_name: str) -> str:
    rigs = sorted(RIGS) if rig_name == "auto" else [rig_name]
    salt = repr((CACHE_VERSION, rig_name, [RIGS[r].fingerprint for r in rigs])).encode()
    return hashlib.sha256(salt + data).hexdigest()


def _atomic_savez(path: Path, **arrays) -> None:
    """Write an ``.npz`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_clip(path: Path, clip: Clip) -> None:
    _atomic_savez(path, joints=clip.joints, floor_mm=clip.floor_mm, frame_time=clip.frame_time, rig=clip.rig)


def _load_clip(path: Path) -> Clip | None:
    try:
        with np.load(path) as z:
            return Clip(z["joints"], float(z["floor_mm"]), float(z["frame_time"]), str(z["rig"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None  # unreadable entry (other version, disk trouble): parse again


def _save_bundle(path: Path, clips: list[Clip]) -> None:
    _atomic_savez(
        path,
        joints=np.concatenate([c.joints for c in clips]),
        lengths=np.array([c.joints.shape[0] for c in clips]),
        floor_mm=np.array([c.floor_mm for c in clips]),
        frame_time=np.array([c.frame_time for c in clips]),
        rig=np.array([c.rig for c in clips]),
    )


def _load_bundle(path: Path, count: int) -> list[Clip] | None:
    try:
        with np.load(path) as z:
            parts = np.split(z["joints"], np.cumsum(z["lengths"])[:-1])
            clips = [
                Clip(j, float(f), float(t), str(r))
                for j, f, t, r in zip(parts, z["floor_mm"], z["frame_time"], z["rig"])
            ]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return clips if len(clips) == count else None


def _parse_job(job: tuple[str, str, str | None]) -> Clip:
    """Worker: read, parse, convert and (optionally) cache one file."""
    path, rig_name, cache_file = job
    clip = _convert(Path(path).read_bytes(), path, rig_name)
    if cache_file is not None:
        _save_clip(Path(cache_file), clip)
    return clip


def load_clips_cached(paths: list[Path], rig: str = "auto", cache_dir: Path | None = None,
                      workers: int | None = None, stats: dict | None = None) -> list[Clip]:  # fmt: skip
    """Parsed clips of ``paths`` (in order), from the cache where possible.

    The cache holds one entry per file (key: content hash, rig fingerprints, ``CACHE_VERSION``) and
    one bundle per list of files (key: the hash of their keys), so a warm start is a single read
    and a changed file costs one parse. Cache misses are parsed in ``workers`` processes (default:
    all CPUs; 0 or 1: in this process). ``stats``, if given, receives ``parsed`` / ``cached`` counts.
    """
    keys = [_cache_key(path.read_bytes(), rig) for path in paths]
    counts = {"parsed": 0, "cached": len(paths)}
    bundle = None
    if cache_dir is not None and len(paths) > 1:
        bundle = cache_dir / "bundles" / f"{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()}.npz"
        clips = _load_bundle(bundle, len(paths)) if bundle.is_file() else None
        if clips is not None:
            if stats is not None:
                stats.update(counts)
            return clips
    found: list[Clip | None] = [None] * len(paths)
    jobs: list[tuple[int, tuple[str, str, str | None]]] = []
    for i, (path, key) in enumerate(zip(paths, keys)):
        entry = cache_dir / key[:2] / f"{key}.npz" if cache_dir is not None else None
        if entry is not None and entry.is_file():
            found[i] = _load_clip(entry)
        if found[i] is None:
            jobs.append((i, (str(path), rig, str(entry) if entry is not None else None)))
    if workers is None:
        workers = os.cpu_count() or 1
    if len(jobs) > 1 and workers > 1:
        # fork starts workers in milliseconds; they only run numpy code, never torch.
        ctx = get_context("fork" if "fork" in get_all_start_methods() else None)
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            results = pool.map(_parse_job, [job for _, job in jobs], chunksize=max(1, len(jobs) // (8 * workers)))
            for (i, _), clip in zip(jobs, results):
                found[i] = clip
    else:
        for i, job in jobs:
            found[i] = _parse_job(job)
    clips = list(found)  # every entry is a Clip now
    if bundle is not None:
        _save_bundle(bundle, clips)  # type: ignore[arg-type]
    counts = {"parsed": len(jobs), "cached": len(paths) - len(jobs)}
    if stats is not None:
        stats.update(counts)
    return clips  # type: ignore[return-value]


def default_cache_dir() -> Path:
    base = os.environ.get("POSEBENCH_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    sub = Path(base) if os.environ.get("POSEBENCH_CACHE") else Path(base) / "posebench"
    return sub / "mocap"


# -- the data module --------------------------------------------------------------------------------


@register
class MocapPoses(PoseDataModule):
    """Motion capture from BVH files seen by random virtual cameras (same batches as ``SyntheticPoses``).

    Args:
        train / val / test: which files form each split (:class:`MocapSplit` or a mapping with its
            fields, e.g. ``{"roots": ["../shared/data/bandai"], "exclude_styles": ["youthful"]}``).
        fps: resample every clip to this frame rate (e.g. 10 from 30 Hz keeps every 3rd frame);
            ``None`` keeps the native rate.
        rig: ``"auto"`` (detect from joint names) or a name from ``datamodules.motion.rigs.RIGS``.
        floor: shift every clip vertically so that the 5th percentile of its lowest foot point is at Z = 0
            (CMU floors differ by up to +-11 cm between clips).
        subject_from: ``"style"`` (one subject id per style label; Bandai records no actor identity)
            or ``"file"`` (one id per file). Ids start at 1.
        label_patterns: regular expressions with named groups ``content``, ``style`` (or ``subject``)
            tried on file stems when no Bandai ``.json`` is present.
        cache_dir: where parsed clips are cached (default ``$POSEBENCH_CACHE`` or
            ``~/.cache/posebench/mocap``); ``None`` with ``use_cache=False`` disables caching.
        use_cache: read and write the cache.
        parse_workers: processes for parsing cache misses (default: all CPUs).
        name: data set name in result records.
        **kwargs: see :class:`datamodules.poses.PoseDataModule` (batch sizes, views, noise, cameras, seed).
    """

    def __init__(self, train: MocapSplit | dict | None = None, val: MocapSplit | dict | None = None,
                 test: MocapSplit | dict | None = None, fps: float | None = None, rig: str = "auto",
                 floor: bool = True, subject_from: Literal["style", "file"] = "style",
                 label_patterns: list[str] | None = None, cache_dir: str | None = None, use_cache: bool = True,
                 parse_workers: int | None = None, name: str = "mocap", **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.splits = {s: MocapSplit.coerce(v, s) for s, v in (("train", train), ("val", val), ("test", test))}
        if all(v is None for v in self.splits.values()):
            raise ValueError(
                "MocapPoses needs at least one of train / val / test, each with roots: [folder]\n" + DATA_HELP
            )
        if fps is not None and fps <= 0:
            raise ValueError(f"MocapPoses option fps must be positive or null, got {fps}")
        if rig != "auto":
            get_rig(rig)
        if subject_from not in ("style", "file"):
            raise ValueError(f"MocapPoses option subject_from must be 'style' or 'file', got {subject_from!r}")
        self.fps = fps
        self.rig = rig
        self.floor = floor
        self.subject_from = subject_from
        self.label_patterns = tuple(label_patterns or DEFAULT_LABEL_PATTERNS)
        for pattern in self.label_patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"MocapPoses label pattern {pattern!r} is not a regular expression: {err}") from None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.use_cache = use_cache
        self.parse_workers = parse_workers
        self._name = name
        self._parsed: dict[str, list[Clip]] = {}
        self.load_stats: dict[str, dict[str, int]] = {}  # per split: files parsed / read from the cache
        self.files  # noqa: B018 - list the files now, so a wrong root fails at construction

    # -- catalogue --------------------------------------------------------------------------------
    @cached_property
    def files(self) -> dict[str, list[ClipFile]]:
        """The labelled files of every configured split (in a stable, sorted order)."""
        out: dict[str, list[ClipFile]] = {}
        cfg_cache: dict = {}
        for split, spec in self.splits.items():
            if spec is None:
                continue
            out[split] = self._select(split, spec, cfg_cache)
        seen: dict[Path, str] = {}
        for split, clips in out.items():
            for clip in clips:
                other = seen.setdefault(clip.path.resolve(), split)
                if other != split:
                    raise ValueError(f"MocapPoses: {clip.path} is in both the {other} and the {split} split; "
                                     "make their file / label filters disjoint")  # fmt: skip
        return out

    def _select(self, split: str, spec: MocapSplit, cfg_cache: dict) -> list[ClipFile]:
        if not spec.roots:
            raise ValueError(f"MocapPoses {split} split has no roots; set {split}: {{roots: [folder]}}\n{DATA_HELP}")
        for key in ("include", "exclude"):
            for pattern in getattr(spec, key):
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(
                        f"MocapPoses {split}.{key} pattern {pattern!r} is not a regular expression: {err}"
                    ) from None
        match_any = lambda value, patterns: any(fnmatch.fnmatchcase(value, p) for p in patterns)  # noqa: E731
        chosen: list[ClipFile] = []
        for root in spec.roots:
            root_path = Path(root).expanduser()
            if not root_path.exists():
                raise FileNotFoundError(f"MocapPoses {split} root {root_path} (absolute: {root_path.absolute()}) does "
                                        f"not exist.\n{DATA_HELP}")  # fmt: skip
            found = find_bvh_files(root_path)
            if not found:
                raise FileNotFoundError(
                    f"MocapPoses {split} root {root_path} holds no .bvh or .bvh.gz files.\n{DATA_HELP}"
                )
            for path in found:
                stem = bvh_stem(path)
                rel = path.relative_to(root_path).as_posix() if root_path.is_dir() else path.name
                if spec.files and not (match_any(stem, spec.files) or match_any(rel, spec.files)):
                    continue
                if spec.include and not any(re.search(p, stem) for p in spec.include):
                    continue
                if any(re.search(p, stem) for p in spec.exclude):
                    continue
                content, style = clip_labels(path, self.label_patterns, cfg_cache)
                if spec.contents and not match_any(content, spec.contents):
                    continue
                if spec.styles and not match_any(style, spec.styles):
                    continue
                if match_any(content, spec.exclude_contents) or match_any(style, spec.exclude_styles):
                    continue
                chosen.append(ClipFile(path, stem, content, style))
        if not chosen:
            raise ValueError(f"MocapPoses {split} split selects no file from {spec.roots} with filters {spec}; "
                             "loosen files / include / contents / styles")  # fmt: skip
        return chosen

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def action_names(self) -> list[str]:
        """Content labels of all splits, sorted (the batch key ``action`` indexes this list)."""
        return sorted({c.content for clips in self.files.values() for c in clips})

    @cached_property
    def subject_names(self) -> list[str]:
        """What subject id ``k`` means: ``subject_names[k - 1]`` (a style label or a file stem)."""
        if self.subject_from == "file":
            return sorted({c.stem for clips in self.files.values() for c in clips})
        return sorted({c.style for clips in self.files.values() for c in clips})

    @property
    def protocol(self) -> dict[str, str]:
        return {**super().protocol, "fps": "native" if self.fps is None else f"{self.fps:g}"}

    # -- loading ------------------------------------------------------------------------------------
    def parsed(self, split: str) -> list[Clip]:
        """The split's clips as parsed (native frame rate, before resampling and floor shift)."""
        if split not in self.files:
            raise ValueError(
                f"MocapPoses has no {split} split configured; add {split}: {{roots: [...]}} to its options"
            )
        if split not in self._parsed:
            cache = self.cache_dir if self.use_cache else None
            self.load_stats[split] = {}
            self._parsed[split] = load_clips_cached([c.path for c in self.files[split]], self.rig, cache,
                                                    self.parse_workers, self.load_stats[split])  # fmt: skip
        return self._parsed[split]

    def load_clips(self, split: str) -> PoseClips:
        files = self.files[split] if split in self.files else None
        if files is None:
            raise ValueError(
                f"MocapPoses has no {split} split configured; add {split}: {{roots: [...]}} to its options"
            )
        parts, lengths = [], []
        clips = self.parsed(split)
        del self._parsed[split]  # the dataset keeps the resampled copy; free the native-rate one
        for clip in clips:
            keep = resample_indices(clip.joints.shape[0], 1.0 / clip.frame_time, self.fps)
            joints = clip.joints[keep]
            if self.floor:
                joints = joints - np.array([0.0, 0.0, clip.floor_mm], dtype=np.float32)
            parts.append(joints)
            lengths.append(len(keep))
        counts = torch.tensor(lengths)
        actions = {a: i for i, a in enumerate(self.action_names)}
        subjects = {s: i + 1 for i, s in enumerate(self.subject_names)}
        subject_of = [subjects[c.stem if self.subject_from == "file" else c.style] for c in files]
        return PoseClips(
            joints_world=torch.from_numpy(np.concatenate(parts)).float(),
            subject=torch.tensor(subject_of).repeat_interleave(counts),
            action=torch.tensor([actions[c.content] for c in files]).repeat_interleave(counts),
            sequence=torch.arange(len(files)).repeat_interleave(counts),
            frame=torch.cat([torch.arange(n) for n in lengths]),
        )

    def summary(self) -> list[dict]:
        """Per split: clips, frames at the native rate and after resampling, seconds, rigs (parses if needed)."""
        rows = []
        for split, files in self.files.items():
            clips = self.parsed(split)
            native = sum(c.joints.shape[0] for c in clips)
            kept = sum(len(resample_indices(c.joints.shape[0], 1.0 / c.frame_time, self.fps)) for c in clips)
            seconds = sum(c.joints.shape[0] * c.frame_time for c in clips)
            rigs = sorted({c.rig for c in clips})
            rows.append({"split": split, "clips": len(files), "frames_native": native, "frames": kept,
                         "seconds": seconds, "rigs": rigs, "contents": len({f.content for f in files}),
                         "styles": len({f.style for f in files})})  # fmt: skip
        return rows
