"""Writers for synthetic sequences: a rosbag2 with ground truth (`bags.writer`) and training shards (npz)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bags.writer import GroundTruthBagWriter
from .generator import SyntheticSequence


def write_bag(seq: SyntheticSequence, path: Path, overwrite: bool = False) -> Path:
    """Write `seq` as a rosbag2 (mcap) directory at `path` (the layout of `bags.topics.TOPICS`)."""
    with GroundTruthBagWriter(path, overwrite) as bag:
        bag.static_transform(int(seq.stamps_ns[0]))
        for f in range(seq.depth.shape[0]):
            bag.frame(int(seq.stamps_ns[f]), image=seq.rgb[f], k=seq.intrinsics, depth=seq.depth[f],
                      pose=seq.world_from_camera[f], points=(seq.point_tracks[:, f], seq.point_visible[:, f]),
                      boxes=(seq.boxes[:, f], seq.box_visible[:, f]))
    return Path(path)


def write_shard(seq: SyntheticSequence, path: Path) -> Path:
    """A training shard: one compressed npz holding every array of the sequence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rgb=seq.rgb, depth=seq.depth.astype(np.float16), intrinsics=seq.intrinsics,
                        world_from_camera=seq.world_from_camera, stamps_ns=seq.stamps_ns,
                        point_tracks=seq.point_tracks, point_visible=seq.point_visible, boxes=seq.boxes,
                        box_visible=seq.box_visible, seed=seq.seed)
    return path
