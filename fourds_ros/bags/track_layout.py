"""The PointCloud2 layouts of published tracks, shared by the node, the bag writers and evaluation.

Packed little-endian records, one per track, fields in this order:
- points: track_id uint32, u float32, v float32, visible uint8, confidence float32
- boxes: track_id uint32, u_min, v_min, u_max, v_max float32, visible uint8, confidence float32
u, v are pixels of the source image (column, row; pixel centres at integers).
"""
from __future__ import annotations

import numpy as np

POINT_DTYPE = np.dtype([("track_id", "<u4"), ("u", "<f4"), ("v", "<f4"), ("visible", "u1"), ("confidence", "<f4")])
BOX_DTYPE = np.dtype([("track_id", "<u4"), ("u_min", "<f4"), ("v_min", "<f4"), ("u_max", "<f4"), ("v_max", "<f4"),
                      ("visible", "u1"), ("confidence", "<f4")])
# sensor_msgs/PointField datatype codes.
POINTFIELD_TYPES = {np.dtype("u1"): 2, np.dtype("<u4"): 6, np.dtype("<f4"): 7}
_FROM_POINTFIELD = {2: np.dtype("u1"), 6: np.dtype("<u4"), 7: np.dtype("<f4")}


def fields_of(dtype: np.dtype) -> list[tuple[str, int, int]]:
    """(name, offset, PointField datatype) for every field of a packed record dtype."""
    return [(name, dtype.fields[name][1], POINTFIELD_TYPES[dtype.fields[name][0]]) for name in dtype.names]


def pack_points(ids: np.ndarray, uv: np.ndarray, visible: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    out = np.empty(len(ids), POINT_DTYPE)
    out["track_id"], out["u"], out["v"] = ids, uv[:, 0], uv[:, 1]
    out["visible"], out["confidence"] = visible, confidence
    return out


def pack_boxes(ids: np.ndarray, boxes: np.ndarray, visible: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    out = np.empty(len(ids), BOX_DTYPE)
    out["track_id"] = ids
    out["u_min"], out["v_min"], out["u_max"], out["v_max"] = boxes.T
    out["visible"], out["confidence"] = visible, confidence
    return out


def unpack(fields: list[tuple[str, int, int]], point_step: int, data: bytes, expected: np.dtype) -> np.ndarray:
    """Records of `expected` layout from PointCloud2 fields `(name, offset, datatype)` and bytes.

    Raises ValueError naming the first field that is missing or of another type.
    """
    have = {name: (offset, datatype) for name, offset, datatype in fields}
    for name in expected.names:
        if name not in have:
            raise ValueError(f"PointCloud2 has no field {name!r} (fields: {sorted(have)})")
        if _FROM_POINTFIELD.get(have[name][1]) != expected.fields[name][0]:
            raise ValueError(f"PointCloud2 field {name!r} has datatype {have[name][1]}, "
                             f"expected {POINTFIELD_TYPES[expected.fields[name][0]]}")
    if point_step <= 0 or len(data) % point_step:
        raise ValueError(f"PointCloud2 data of {len(data)} bytes is not a multiple of point_step {point_step}")
    layout = np.dtype({"names": list(expected.names), "formats": [expected.fields[n][0] for n in expected.names],
                       "offsets": [have[n][0] for n in expected.names], "itemsize": point_step})
    return np.frombuffer(data, layout).astype(expected)
