"""Training shards written once, in parallel, with the camera varied per sequence.

A shard's settings follow from its seed alone (`shard_settings`), so a set of shards is the same whichever
machine, worker count or order wrote it, and an existing shard is never rewritten: interrupted runs resume, and
every training run reuses what is there.
"""
from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)
# Cameras robots carry: 4:3 (most USB and machine-vision cameras), 16:9 (phones, RealSense colour), 1:1.
ASPECTS = ((3, 4), (9, 16), (1, 1))
# Camera motions in a training set: mostly driving, then carried, a few standing with people walking by.
MOTION_MIX = (("robot", 0.45), ("handheld", 0.2), ("walking", 0.2), ("standing", 0.15))


@dataclass(frozen=True)
class ShardSettings:
    seed: int
    height: int
    width: int
    fovy_deg: float
    camera_motion: str
    sensor_effects: bool
    style: str


def shard_settings(seed: int, width: int, style: str, vary: bool) -> ShardSettings:
    """Without `vary`: 4:3, 60 degrees, a driving robot, clean images. With it: an aspect ratio, a vertical field
    of view of 40-75 degrees, a camera motion and sensor effects (half of the shards) drawn from the seed."""
    if not vary:
        return ShardSettings(seed, width * 3 // 4, width, 60.0, "robot", False, style)
    rng = np.random.default_rng([seed, 17])
    aspect = ASPECTS[int(rng.choice(len(ASPECTS), p=[0.6, 0.3, 0.1]))]
    names, weights = zip(*MOTION_MIX)
    return ShardSettings(seed, width * aspect[0] // aspect[1], width, float(rng.uniform(40, 75)),
                         str(rng.choice(names, p=weights)), bool(rng.random() < 0.5), style)


def _write_one(settings: ShardSettings, frames: int, path: Path) -> Path:
    from .generator import generate
    from .writers import write_shard
    seq = generate(settings.seed, frames, settings.height, settings.width, fovy_deg=settings.fovy_deg,
                   camera_motion=settings.camera_motion, sensor_effects=settings.sensor_effects, style=settings.style)
    return write_shard(seq, path)


def write_shards(seeds: list[int], out_dir: Path, frames: int, width: int, style: str = "procedural",
                 vary: bool = False, workers: int = 1, progress: bool = True) -> list[Path]:
    """Write the missing shards `out_dir/<seed>.npz` over `workers` processes; returns every shard's path."""
    from tqdm import tqdm
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {seed: out_dir / f"{seed}.npz" for seed in seeds}
    todo = [seed for seed, path in paths.items() if not path.is_file()]
    if style == "photo" and todo:  # fill the texture cache once, before the workers race for it
        from .assets import AssetLibrary
        LOG.info("photo assets: %s", AssetLibrary.default().describe())
    # Spawned, not forked: a forked child inherits the parent's GL context and OpenMP threads, and can hang.
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool, \
            tqdm(total=len(todo), desc=f"shards -> {out_dir}", unit="shard", disable=not progress) as bar:
        jobs = {pool.submit(_write_one, shard_settings(seed, width, style, vary), frames, paths[seed]): seed
                for seed in todo}
        for job in as_completed(jobs):
            job.result()
            bar.update()
    return [paths[seed] for seed in seeds]


