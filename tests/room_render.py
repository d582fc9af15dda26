"""A ray-cast textured room (and an optional moving box) for tests that need frames of known geometry.

Camera poses are camera-to-world in OpenCV optical axes; depth is metres along the optical axis.
"""
from __future__ import annotations

import numpy as np

HALF = np.array([2.0, 1.5, 3.0])  # the room spans [-HALF, HALF] metres


def _texture(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """A band-limited random pattern (sum of sinusoids), smooth enough for Lucas-Kanade, rich in corners."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(u)
    for _ in range(12):
        fu, fv = rng.uniform(2, 9, 2)
        out += np.sin(fu * u + rng.uniform(0, 6)) * np.sin(fv * v + rng.uniform(0, 6))
    checker = ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2) * 1.5
    return 0.5 + 0.09 * out + 0.12 * checker


def render(world_from_camera: np.ndarray, k: np.ndarray, size: tuple[int, int],
           box_centre: np.ndarray | None = None, box_half: float = 0.35, supersample: int = 2
           ) -> tuple[np.ndarray, np.ndarray]:
    """(grey uint8 image, depth float32) seen by the camera; the image is rendered `supersample` times larger
    and averaged down, so edges are anti-aliased as a real lens and sensor would."""
    h, w = size
    s = supersample
    ks = k.copy()
    ks[:2] *= s
    ks[0, 2], ks[1, 2] = (k[0, 2] + 0.5) * s - 0.5, (k[1, 2] + 0.5) * s - 0.5
    value, _ = _cast(world_from_camera, ks, (h * s, w * s), box_centre, box_half, shade=True)
    _, depth = _cast(world_from_camera, k, (h, w), box_centre, box_half, shade=False)
    grey = value.reshape(h, s, w, s).mean(axis=(1, 3))
    return np.clip(grey * 255, 0, 255).astype(np.uint8), depth.astype(np.float32)


def _cast(world_from_camera, k, size, box_centre, box_half, shade: bool):
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)], -1).reshape(-1, 3)
    r, origin = world_from_camera[:3, :3], world_from_camera[:3, 3]
    d = rays @ r.T  # world directions; the camera-z component is 1, so the ray parameter is the depth
    hits = []  # (t, surface id) per candidate surface
    for axis in range(3):
        for sign in (-1, 1):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (sign * HALF[axis] - origin[axis]) / d[:, axis]
            hits.append(np.where(t > 0, t, np.inf))
    if box_centre is not None:
        lo, hi = box_centre - box_half, box_centre + box_half
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (lo - origin) / d, (hi - origin) / d
        near, far = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
        hits.append(np.where((near > 0) & (near <= far), near, np.inf))
    hits = np.stack(hits)
    surface = np.argmin(hits, axis=0)
    depth = hits[surface, np.arange(len(surface))]
    value = np.zeros(len(surface))
    if shade:
        p = origin + d * depth[:, None]
        for sid in np.unique(surface):
            sel = surface == sid
            if sid < 6:
                axis = sid // 2
                a, b = [i for i in range(3) if i != axis]
                value[sel] = _texture(p[sel, a], p[sel, b], seed=int(sid))
            else:
                q = (p[sel] - box_centre) * 4  # the box's own pattern, finer than the walls', moving with it
                value[sel] = _texture(q[:, 0] + q[:, 2], q[:, 1] + q[:, 2], seed=99)
    return value.reshape(h, w), depth.reshape(h, w)


def look(yaw_deg: float = 0.0, position=(0.0, 0.0, -1.5)) -> np.ndarray:
    """A camera at `position` looking along +z turned by `yaw_deg` about the vertical (y) axis."""
    from scipy.spatial.transform import Rotation
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    pose[:3, 3] = position
    return pose
