"""Clip datasets: folders of videos, rosbag2 image topics and synthetic shards, as 16-frame clips.

Which clip a step sees and how it is augmented depend only on (seed, global sample position): resuming at a
step, or running on another number of ranks or workers, gives the same clips and the same MAE masks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fourds_ros.streaming.camera import PixelMap
from fourds_ros.streaming.geometry import pinhole

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")

LOG = logging.getLogger(__name__)


class DataError(ValueError):
    """A data source is missing, unreadable or too short for one clip."""


@dataclass
class Sequence:
    """One source video in memory; `truth` holds synthetic ground truth when the source is a shard."""

    name: str
    frames: np.ndarray  # (F, H, W, 3) uint8
    truth: dict | None = None
    intrinsics: np.ndarray | None = None  # (3, 3) camera matrix in pixels of `frames`, when known


def _read_video(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise DataError(f"OpenCV read no frames from {path}")
    return np.stack(frames)


def load_sequences(sources: tuple[str, ...], image_topic: str = "") -> list[Sequence]:
    """Every sequence under `sources`: video files, folders of them, rosbag2 directories, folders of .npz shards."""
    out = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise DataError(f"data source {path} does not exist")
        if (path / "metadata.yaml").is_file():  # a rosbag2 directory
            from fourds_ros.bags.reader import read_bag
            _, frames, gt = read_bag(path, image_topic or None)
            if not frames:
                raise DataError(f"bag {path} has no usable image frames")
            out.append(Sequence(path.name, np.stack([f.rgb() for f in frames]), intrinsics=gt.intrinsics))
        elif path.suffix == ".npz":
            out.append(_read_shard(path))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            out.append(Sequence(path.name, _read_video(path)))
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if p.suffix == ".npz" or p.suffix.lower() in VIDEO_SUFFIXES
                              or (p / "metadata.yaml").is_file())
            if not children:
                raise DataError(f"{path} holds no videos, bags or .npz shards")
            out += load_sequences(tuple(str(c) for c in children), image_topic)
        else:
            raise DataError(f"{path} is not a video, a rosbag2 directory, an .npz shard or a folder of them")
    return out


def _read_shard(path: Path) -> Sequence:
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise DataError(f"cannot read shard {path}: {exc}") from None
    rgb = data.pop("rgb")
    return Sequence(path.stem, rgb, data, data.get("intrinsics"))


class ClipDataset(torch.utils.data.Dataset):
    """`dataset[position]` -> the clip for that global sample position (an epoch is one permutation of clips)."""

    def __init__(self, sequences: list[Sequence], frames: int, size: tuple[int, int], stride: int = 1,
                 crop_scale: tuple[float, float] = (0.6, 1.0), flip: bool = True, seed: int = 0,
                 token_grid: tuple[int, int, int] | None = None, mask_ratio: float = 0.0,
                 intrinsics_fov_deg: float | None = None):
        """`intrinsics_fov_deg`: not None for self-supervision: every sample carries its camera matrix at clip
        resolution (a pinhole of this horizontal field of view where a source has none; 0: none assumed, such
        a source is an error) and the same keys whether its source has ground truth (`labelled`) or not."""
        self.sequences, self.frames, self.size, self.stride = sequences, frames, size, stride
        self.crop_scale, self.flip, self.seed = crop_scale, flip, seed
        self.token_grid, self.mask_ratio = token_grid, mask_ratio
        self.intrinsics: list[np.ndarray] | None = None
        if intrinsics_fov_deg is not None:
            missing = [seq.name for seq in sequences if seq.intrinsics is None]
            if missing and not intrinsics_fov_deg:
                raise DataError(f"{', '.join(missing)}: no camera intrinsics for self-supervision (a video, or a bag "
                                f"without camera_info); set data.horizontal_fov_deg to assume a pinhole, e.g. 60")
            self.intrinsics = [seq.intrinsics if seq.intrinsics is not None
                               else pinhole(*seq.frames.shape[1:3], intrinsics_fov_deg) for seq in sequences]
        tiny = [f"{seq.name} ({seq.frames.shape[1]}x{seq.frames.shape[2]})" for seq in sequences
                if seq.frames.shape[1] * 2 < size[0] or seq.frames.shape[2] * 2 < size[1]]
        if tiny:  # more than 2x upsampling trains the model on blur it will never see
            raise DataError(f"frames smaller than half the {size[0]}x{size[1]} clip: {', '.join(tiny)}; use a "
                            f"smaller model.clip or larger frames")
        span = (frames - 1) * stride + 1
        short = [seq.name for seq in sequences if len(seq.frames) < span]
        if short:
            LOG.warning("%d source(s) shorter than one clip of %d frames are left out: %s", len(short), span,
                        ", ".join(short))
        self.clips = [(s, start) for s, seq in enumerate(sequences) for start in range(0, len(seq.frames) - span + 1)]
        if not self.clips:
            raise DataError(f"no source has {span} frames (clips of {frames} frames at stride {stride})")

    def __len__(self) -> int:
        return len(self.clips)

    def _clip_at(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, len(self.clips))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.clips))
        return self.clips[order[offset]]

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1_000_003, position])
        s, start = self._clip_at(position)
        seq = self.sequences[s]
        index = start + np.arange(self.frames) * self.stride
        frames = seq.frames[index]
        h, w = frames.shape[1:3]
        x0, y0, cw, ch = self._crop(rng, h, w)
        flip = self.flip and rng.random() < 0.5
        out_h, out_w = self.size
        video = np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (out_w, out_h), interpolation=cv2.INTER_AREA)
                          for f in frames])
        if flip:
            video = video[:, :, ::-1]
        sample = {"video": torch.from_numpy(np.ascontiguousarray(video)), "position": torch.tensor(position)}
        if self.token_grid is not None and self.mask_ratio > 0:
            n = int(np.prod(self.token_grid))
            keep = max(1, int(round(n * (1 - self.mask_ratio))))
            sample["keep_index"] = torch.from_numpy(np.sort(rng.permutation(n)[:keep]).astype(np.int64))
        if seq.truth is not None:
            sample.update(readout_targets(seq.truth, index, (x0, y0, cw, ch), (out_h, out_w), rng))
        if self.intrinsics is not None:
            sample["intrinsics"] = torch.from_numpy(_clip_intrinsics(self.intrinsics[s], (x0, y0, cw, ch),
                                                                     (out_h, out_w), flip))
            sample["labelled"] = torch.tensor(seq.truth is not None)
            if seq.truth is None:
                sample.update(unlabelled_targets(self.frames, (out_h, out_w)))
        return sample

    def _crop(self, rng, h: int, w: int) -> tuple[int, int, int, int]:
        lo, hi = self.crop_scale
        if hi >= 1.0 and lo >= 1.0:
            return 0, 0, w, h
        scale = np.sqrt(rng.uniform(lo, hi))
        aspect = self.size[1] / self.size[0]
        # Of the clip's aspect ratio whatever the source's (4:3, 16:9 and square cameras train one model).
        ch = max(1, min(h, int(round(min(h, w / aspect) * scale))))
        cw = max(1, min(w, int(round(ch * aspect))))
        return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch


def readout_targets(truth: dict, index: np.ndarray, crop: tuple[int, int, int, int], size: tuple[int, int],
                    rng: np.random.Generator, points: int = 32) -> dict[str, torch.Tensor]:
    """Ground truth for one clip at model resolution: depth, poses relative to frame 0, point and box tracks."""
    x0, y0, cw, ch = crop
    out_h, out_w = size
    to_model = PixelMap.crop_resize(crop, size).to_model  # source pixel centres -> model pixel centres
    depth = np.stack([cv2.resize(d[y0:y0 + ch, x0:x0 + cw].astype(np.float32), (out_w, out_h),
                                 interpolation=cv2.INTER_NEAREST) for d in truth["depth"][index]])
    poses = truth["world_from_camera"][index]
    relative = np.linalg.inv(poses[0]) @ poses
    tracks, visible = truth["point_tracks"][:, index], truth["point_visible"][:, index]
    tx, ty = to_model(tracks[..., 0], tracks[..., 1])
    inside = (tx >= 0) & (tx <= out_w - 1) & (ty >= 0) & (ty <= out_h - 1)
    visible = visible & inside
    usable = np.flatnonzero(visible.any(axis=1))
    chosen = rng.choice(usable, size=min(points, len(usable)), replace=False) if len(usable) else np.zeros(0, int)
    first = np.argmax(visible[chosen], axis=1)
    query = np.stack([first, ty[chosen, first], tx[chosen, first]], -1) if len(chosen) else np.zeros((0, 3))
    point_target = np.stack([tx[chosen], ty[chosen]], -1)
    boxes, box_visible = truth["boxes"][:, index], truth["box_visible"][:, index]
    bx0, by0 = to_model(boxes[..., 0], boxes[..., 1])
    bx1, by1 = to_model(boxes[..., 2], boxes[..., 3])
    box_target = np.stack([bx0, by0, bx1, by1], -1)
    seen = np.flatnonzero(box_visible.any(axis=1))
    box_first = np.argmax(box_visible[seen], axis=1)
    box_query = np.concatenate([box_first[:, None], box_target[seen, box_first]], -1) if len(seen) else np.zeros((0, 5))
    return {"depth": torch.from_numpy(depth), "pose": torch.from_numpy(relative.astype(np.float32)),
            "point_queries": torch.from_numpy(_pad(query, points)), "point_targets": torch.from_numpy(_pad(point_target, points)),
            "point_visible": torch.from_numpy(_pad(visible[chosen].astype(np.float32), points)),
            "point_valid": torch.from_numpy(np.arange(points) < len(chosen)),
            "box_queries": torch.from_numpy(_pad(box_query, 16)), "box_targets": torch.from_numpy(_pad(box_target[seen], 16)),
            "box_visible": torch.from_numpy(_pad(box_visible[seen].astype(np.float32), 16)),
            "box_valid": torch.from_numpy(np.arange(16) < len(seen))}


def _clip_intrinsics(k: np.ndarray, crop: tuple[int, int, int, int], size: tuple[int, int], flip: bool) -> np.ndarray:
    """The camera matrix of a crop resized to `size` (pixel centres map as the frames do), mirrored with `flip`."""
    out = PixelMap.crop_resize(crop, size).intrinsics_to_model(k).astype(np.float32)
    if flip:
        out[0, 2] = size[1] - 1 - out[0, 2]
    return out


def unlabelled_targets(frames: int, size: tuple[int, int], points: int = 32, boxes: int = 16) -> dict:
    """What `readout_targets` gives, for a clip without ground truth: nothing valid (depth NaN, no tracks)."""
    h, w = size
    return {"depth": torch.full((frames, h, w), float("nan")), "pose": torch.eye(4).expand(frames, 4, 4).clone(),
            "point_queries": torch.zeros(points, 3), "point_targets": torch.zeros(points, frames, 2),
            "point_visible": torch.zeros(points, frames), "point_valid": torch.zeros(points, dtype=torch.bool),
            "box_queries": torch.zeros(boxes, 5), "box_targets": torch.zeros(boxes, frames, 4),
            "box_visible": torch.zeros(boxes, frames), "box_valid": torch.zeros(boxes, dtype=torch.bool)}


def _pad(array: np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(array, np.float32)[:count]
    out = np.zeros((count, *array.shape[1:]), np.float32)
    out[: len(array)] = array
    return out
