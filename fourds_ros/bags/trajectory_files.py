"""Ground-truth trajectory files as robotics datasets ship them, read into camera-to-world 4x4 poses.

- TUM: `timestamp tx ty tz qx qy qz qw` per line (seconds; '#' comments).
- KITTI: 12 numbers per line, the row-major top 3x4 of each frame's camera-to-world pose, one line per frame.
- EuRoC / ASL csv: `time_ns, px, py, pz, qw, qx, qy, qz, ...` (state_groundtruth_estimate0/data.csv layout).
- plain 4x4: 16 numbers per line (row-major camera-to-world), one line per frame.

Every reader names the file and line of the first problem it meets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation


class TrajectoryFileError(ValueError):
    """A trajectory file cannot be read: the message names the file and line."""


@dataclass
class PoseTable:
    poses: np.ndarray  # (N, 4, 4) camera (or body) to world
    stamps_ns: np.ndarray | None  # (N,) or None when poses are one per frame in order (KITTI, 4x4)

    def __len__(self) -> int:
        return len(self.poses)


def _rows(path: Path, sep: str | None = None) -> list[tuple[int, list[float]]]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TrajectoryFileError(f"trajectory file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajectoryFileError(f"cannot read trajectory file {path}: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append((number, [float(v) for v in (line.split(sep) if sep else line.replace(",", " ").split())]))
        except ValueError:
            raise TrajectoryFileError(f"{path}:{number}: not a row of numbers: {line[:80]!r}") from None
    if not rows:
        raise TrajectoryFileError(f"trajectory file {path} holds no poses")
    return rows


def check_rigid(pose: np.ndarray, where: str, tolerance: float = 1e-3) -> np.ndarray:
    """Raise unless `pose` is a rigid transform (orthonormal rotation with determinant +1, last row 0 0 0 1)."""
    r = pose[:3, :3]
    if not np.isfinite(pose).all() or not np.allclose(pose[3], [0, 0, 0, 1], atol=tolerance) \
            or not np.allclose(r @ r.T, np.eye(3), atol=tolerance) or abs(np.linalg.det(r) - 1) > tolerance:
        raise TrajectoryFileError(f"{where}: not a rigid transform (rotation must be orthonormal with det +1)")
    return pose


def _check_order(stamps: np.ndarray, lines: list[int], path: Path) -> None:
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        what = "duplicated" if steps[bad[0]] == 0 else "out of order"
        raise TrajectoryFileError(f"{path}:{lines[i]}: timestamp {what}")


def _quaternion_pose(path: Path, number: int, t: list[float], q_xyzw: list[float]) -> np.ndarray:
    q = np.asarray(q_xyzw, np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or abs(norm - 1) > 1e-2:
        raise TrajectoryFileError(f"{path}:{number}: quaternion of norm {norm:.4f} is not a rotation")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(q / norm).as_matrix()
    pose[:3, 3] = t
    return pose


def _stamped_quaternion_rows(path: Path, check_width, stamp_ns, position, quaternion_xyzw) -> PoseTable:
    """Rows of a timestamp, a position and a quaternion, in the column order the accessor functions pick."""
    stamps, poses, lines = [], [], []
    for number, v in _rows(path):
        problem = check_width(len(v))
        if problem:
            raise TrajectoryFileError(f"{path}:{number}: {problem}, got {len(v)} values")
        stamps.append(stamp_ns(v))
        poses.append(_quaternion_pose(path, number, position(v), quaternion_xyzw(v)))
        lines.append(number)
    stamps_a = np.array(stamps, np.int64)
    _check_order(stamps_a, lines, Path(path))
    return PoseTable(np.array(poses), stamps_a)


def read_tum(path: Path) -> PoseTable:
    return _stamped_quaternion_rows(
        path, lambda n: None if n == 8 else "a TUM row has 8 values (t tx ty tz qx qy qz qw)",
        lambda v: int(round(v[0] * 1e9)), lambda v: v[1:4], lambda v: v[4:8])


def read_euroc_csv(path: Path) -> PoseTable:
    return _stamped_quaternion_rows(
        path, lambda n: None if n >= 8 else "an EuRoC row starts time_ns,px,py,pz,qw,qx,qy,qz",
        lambda v: int(v[0]), lambda v: v[1:4], lambda v: [v[5], v[6], v[7], v[4]])


def read_matrix_rows(path: Path) -> PoseTable:
    """KITTI (12 values per line) or plain 4x4 (16 values per line): one pose per frame, in order."""
    rows = _rows(path)
    poses = []
    for number, v in rows:
        if len(v) not in (12, 16):
            raise TrajectoryFileError(f"{path}:{number}: expected 12 (KITTI 3x4) or 16 (4x4) values, got {len(v)}")
        pose = np.eye(4)
        pose[: len(v) // 4] = np.asarray(v).reshape(-1, 4)
        poses.append(check_rigid(pose, f"{path}:{number}"))
    return PoseTable(np.array(poses), None)


def read_trajectory(path: Path) -> PoseTable:
    """Any of the formats above, told apart by the values per line."""
    rows = _rows(path)
    width = len(rows[0][1])
    if width == 8 and Path(path).suffix != ".csv":  # EuRoC ships csv; TUM files are .txt, .tum, ...
        return read_tum(path)
    if width in (12, 16):
        return read_matrix_rows(path)
    if width >= 8:
        return read_euroc_csv(path)
    raise TrajectoryFileError(f"{path}: {width} values per line is no trajectory format known here "
                              f"(TUM 8, KITTI 12, 4x4 16, EuRoC csv >= 8)")


MATCH_WINDOW_S = 0.02  # the TUM benchmark's `associate.py` default


def associate(frame_stamps_ns: np.ndarray, table: PoseTable, max_difference_s: float = MATCH_WINDOW_S) -> np.ndarray:
    """Poses for each frame: by index for per-frame tables, else the nearest stamp within `max_difference_s`.
    Frames without a match get NaN poses."""
    frames = len(frame_stamps_ns)
    out = np.full((frames, 4, 4), np.nan)
    if table.stamps_ns is None:
        if len(table) != frames:
            raise TrajectoryFileError(f"{len(table)} poses for {frames} frames: a per-frame trajectory file must "
                                      f"have one pose per frame")
        return table.poses.copy()
    index = np.searchsorted(table.stamps_ns, frame_stamps_ns)
    for f, (stamp, i) in enumerate(zip(frame_stamps_ns, index)):
        candidates = [j for j in (i - 1, i) if 0 <= j < len(table)]
        j = min(candidates, key=lambda c: abs(int(table.stamps_ns[c]) - int(stamp)))
        if abs(int(table.stamps_ns[j]) - int(stamp)) <= max_difference_s * 1e9:
            out[f] = table.poses[j]
    return out
