"""Smooth random camera and object paths, with rotation-only and static stretches for the camera."""
from __future__ import annotations

import numpy as np

from .scene import ROOM_HALF, WALL_HEIGHT


def smooth_signal(rng: np.random.Generator, t: np.ndarray, dims: int, components: int = 3,
                  max_frequency: float = 0.1) -> np.ndarray:
    """`(len(t), dims)` sums of random sinusoids, bounded by [-1, 1] whatever the length of `t`.

    Normalised by the sum of the amplitudes (not the observed maximum), so speeds do not depend on the
    clip length: at most `2 pi max_frequency` per second.
    """
    out = np.zeros((len(t), dims))
    total = np.zeros(dims)
    for _ in range(components):
        freq = rng.uniform(0.3 * max_frequency, max_frequency, dims)
        phase = rng.uniform(0, 2 * np.pi, dims)
        amplitude = rng.uniform(0.3, 1.0, dims)
        out += amplitude * np.sin(2 * np.pi * freq * t[:, None] + phase)
        total += amplitude
    return out / total


def motion_clock(rng: np.random.Generator, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two warped clocks: position time and look-at time. Stretches are 'move', 'rotate' or 'static'.

    The rates are smoothed with a short ramp so that speed changes are gradual.
    """
    kinds, position_rate, target_rate = [], np.zeros(frames), np.zeros(frames)
    i = 0
    while i < frames:
        length = int(rng.integers(max(frames // 6, 8), max(frames // 3, 9)))
        # Open with motion (so every clip has translation to score); then any kind of stretch.
        kind = "move" if i == 0 else rng.choice(["move", "move", "rotate", "static"])
        position_rate[i:i + length] = 1.0 if kind == "move" else 0.0
        target_rate[i:i + length] = 0.0 if kind == "static" else 1.0
        kinds += [kind] * min(length, frames - i)
        i += length
    ramp = np.hanning(7)
    ramp /= ramp.sum()
    position_rate = np.convolve(position_rate, ramp, mode="same")
    target_rate = np.convolve(target_rate, ramp, mode="same")
    return np.cumsum(position_rate) / fps, np.cumsum(target_rate) / fps, kinds


def camera_path(rng: np.random.Generator, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Camera positions and look-at targets `(frames, 3)` inside the room."""
    position_clock, target_clock, kinds = motion_clock(rng, frames, fps)
    centre = np.array([*rng.uniform(-1, 1, 2), 1.4])
    # Up to ~1.3 m/s and ~60 deg/s: a robot's camera, trackable at 30 Hz.
    position = centre + smooth_signal(rng, position_clock, 3, max_frequency=0.1) * [2.0, 2.0, 0.3]
    direction = smooth_signal(rng, target_clock, 2, max_frequency=0.1) * [np.pi, 1.0]
    direction[:, 0] += rng.uniform(-np.pi, np.pi)
    target = position.copy()
    target[:, 0] += 3 * np.cos(direction[:, 0])
    target[:, 1] += 3 * np.sin(direction[:, 0])
    target[:, 2] = 0.8 + 0.5 * direction[:, 1]
    limit = ROOM_HALF - 0.6
    position[:, :2] = position[:, :2].clip(-limit, limit)
    return position, target, kinds


def mounting(rng: np.random.Generator, position: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-mount a camera path: at 0.3 m (a small robot) to 1.8 m (a head) above the floor, pitched from 45 degrees
    down (a table, the floor just ahead) to 10 degrees up, keeping the path's own ups and downs."""
    position, target = position.copy(), target.copy()
    height, pitch = rng.uniform(0.3, 1.8), np.radians(rng.uniform(-45, 10))
    sway = target[:, 2] - target[:, 2].mean() - (position[:, 2] - position[:, 2].mean())
    position[:, 2] += height - position[:, 2].mean()
    position[:, 2] = position[:, 2].clip(0.2, WALL_HEIGHT - 0.3)
    reach = np.linalg.norm(target[:, :2] - position[:, :2], axis=1)
    target[:, 2] = position[:, 2] + reach * np.tan(pitch) + 0.5 * sway
    return position, target


def body_motion(rng: np.random.Generator, position: np.ndarray, target: np.ndarray, fps: float,
                kind: str) -> tuple[np.ndarray, np.ndarray]:
    """What carrying the camera adds to a smooth path: "handheld", a hand's tremor and sway (1-3 cm, 3-8 Hz);
    "walking", a head-mounted camera's gait (vertical bob of 2-4 cm at twice the 1.6-2.1 Hz step rate, sideways
    sway at the step rate, a little pitch with each step)."""
    frames = len(position)
    t = np.arange(frames) / fps
    position, target = position.copy(), target.copy()
    if kind == "handheld":
        for scale, points in ((rng.uniform(0.01, 0.03), position), (rng.uniform(0.02, 0.06), target)):
            freq, phase = rng.uniform(3, 8, 3), rng.uniform(0, 2 * np.pi, 3)
            points += scale * np.sin(2 * np.pi * freq * t[:, None] + phase) * rng.uniform(0.5, 1.0, 3)
    elif kind == "walking":
        step, phase = rng.uniform(1.6, 2.1), rng.uniform(0, 2 * np.pi)
        heading = np.gradient(position[:, :2], axis=0)
        heading /= np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)
        side = np.column_stack([-heading[:, 1], heading[:, 0]])
        bob = rng.uniform(0.02, 0.04) * np.sin(4 * np.pi * step * t + phase)
        sway = rng.uniform(0.01, 0.03) * np.sin(2 * np.pi * step * t + phase)
        position[:, 2] += bob
        position[:, :2] += sway[:, None] * side
        target[:, 2] += bob + rng.uniform(0.02, 0.08) * np.sin(4 * np.pi * step * t + phase + 0.5)
    else:
        raise ValueError(f"unknown body motion {kind!r}")
    return position, target


def object_path(rng: np.random.Generator, frames: int, fps: float, start: np.ndarray, height: float) -> np.ndarray:
    """A moving object's positions `(frames, 3)`: a smooth wander on the floor around `start`."""
    t = np.arange(frames) / fps
    offset = smooth_signal(rng, t, 2, max_frequency=0.15) * rng.uniform(0.8, 2.0)
    xy = (start[:2] + offset).clip(-ROOM_HALF + 0.7, ROOM_HALF - 0.7)
    return np.column_stack([xy, np.full(frames, height)])


def standing_camera(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A camera on a tripod (or a robot standing still): one position and look-at target for every frame."""
    position = np.array([*rng.uniform(-1, 1, 2), 1.4])
    heading = rng.uniform(-np.pi, np.pi)
    target = position + [3 * np.cos(heading), 3 * np.sin(heading), rng.uniform(-0.8, 0)]
    return np.tile(position, (frames, 1)), np.tile(target, (frames, 1)), ["static"] * frames


def walk_across_view(rng: np.random.Generator, frames: int, fps: float, camera: np.ndarray, target: np.ndarray,
                     height: float) -> np.ndarray:
    """A person's positions `(frames, 3)`: a straight walk at 0.8-1.5 m/s across the camera's view, 1.5-4 m in
    front of it, crossing the optical axis around a random moment of the clip."""
    forward = (target - camera)[:2]
    forward /= np.linalg.norm(forward)
    across = np.array([-forward[1], forward[0]]) * rng.choice([-1.0, 1.0])
    speed = rng.uniform(0.8, 1.5)
    t = np.arange(frames) / fps - rng.uniform(0.2, 0.8) * frames / fps
    xy = camera[:2] + forward * rng.uniform(1.5, 4.0) + across * speed * t[:, None]
    return np.column_stack([xy.clip(-ROOM_HALF + 0.4, ROOM_HALF - 0.4), np.full(frames, height)])


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MuJoCo camera orientation (x right, y up, looking along -z) as a 3x3 matrix."""
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.column_stack([right, up, -forward])
