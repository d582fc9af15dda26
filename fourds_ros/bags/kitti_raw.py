"""The KITTI raw layout: a drive's rectified camera images, its OXTS GPS/IMU records and the calibration files.

Layout (as the dataset's zips unpack): `<date>/calib_cam_to_cam.txt`, `calib_imu_to_velo.txt`,
`calib_velo_to_cam.txt` and `<date>/<date>_drive_XXXX_sync/{image_00..03/data/*.png, image_0X/timestamps.txt,
oxts/data/*.txt}`. Either the date folder (with one drive) or the drive folder can be given.

Camera poses come from the OXTS records the way the KITTI raw devkit does it (`convertOxtsToPose.m`; also
pykitti): latitude and longitude through a Mercator projection whose scale is fixed by the first record's
latitude, the altitude as height, orientation `Rz(yaw) Ry(pitch) Rx(roll)`; the camera's pose is the IMU's
times the inverse of the camera-from-IMU transform of the calibration files (`T(P_rect baseline) R_rect_00
T_cam0_velo T_velo_imu`), expressed relative to the first frame.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

EARTH_RADIUS_M = 6378137.0  # the devkit's Mercator radius
CALIBRATION = ("calib_cam_to_cam.txt", "calib_imu_to_velo.txt", "calib_velo_to_cam.txt")


class KittiRawError(ValueError):
    """A file of the layout is missing or malformed: the message names it."""


def find_drive(path: Path) -> tuple[Path, Path]:
    """(drive folder, calibration folder) of a KITTI raw date folder or drive folder."""
    path = Path(path)
    if (path / "oxts").is_dir():
        return path, path.parent
    drives = sorted(p for p in path.glob("*_sync") if (p / "oxts").is_dir())
    if len(drives) != 1:
        raise KittiRawError(f"{path}: expected one drive folder (*_sync with oxts/), found {len(drives)}")
    return drives[0], path


def is_kitti_raw(path: Path) -> bool:
    try:
        drive, calibration = find_drive(path)
    except KittiRawError:
        return False
    return (calibration / CALIBRATION[0]).is_file()


def read_calibration(path: Path) -> dict[str, np.ndarray]:
    """The `name: numbers` rows of a KITTI calibration file (rows that are not numbers, like `calib_time`, left out)."""
    if not path.is_file():
        raise KittiRawError(f"missing {path}")
    out = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        name, values = line.split(":", 1)
        try:
            out[name.strip()] = np.array([float(v) for v in values.split()])
        except ValueError:
            continue
    return out


def _rigid(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = np.reshape(r, (3, 3)), np.ravel(t)
    return out


def camera_from_imu(calibration: Path, camera: int) -> np.ndarray:
    """The rectified camera `camera`'s transform from the IMU frame."""
    cam = read_calibration(calibration / CALIBRATION[0])
    imu_velo = read_calibration(calibration / CALIBRATION[1])
    velo_cam = read_calibration(calibration / CALIBRATION[2])
    try:
        projection = cam[f"P_rect_0{camera}"].reshape(3, 4)
        rectify = _rigid(cam["R_rect_00"], np.zeros(3))
        velo_from_imu = _rigid(imu_velo["R"], imu_velo["T"])
        cam0_from_velo = _rigid(velo_cam["R"], velo_cam["T"])
    except (KeyError, ValueError) as exc:
        raise KittiRawError(f"{calibration}: calibration entry {exc} missing or malformed") from None
    baseline = np.eye(4)
    baseline[0, 3] = projection[0, 3] / projection[0, 0]
    return baseline @ rectify @ cam0_from_velo @ velo_from_imu


def oxts_poses(records: np.ndarray) -> np.ndarray:
    """World-from-IMU (F, 4, 4) of OXTS records (F, >= 6: lat, lon, alt, roll, pitch, yaw), metres."""
    lat, lon, alt, roll, pitch, yaw = (records[:, i] for i in range(6))
    scale = np.cos(np.radians(lat[0]))
    x = scale * EARTH_RADIUS_M * np.radians(lon)
    y = scale * EARTH_RADIUS_M * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    poses = np.tile(np.eye(4), (len(records), 1, 1))
    for i in range(len(records)):
        cr, sr, cp, sp, cy, sy = (np.cos(roll[i]), np.sin(roll[i]), np.cos(pitch[i]), np.sin(pitch[i]),
                                  np.cos(yaw[i]), np.sin(yaw[i]))
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        poses[i, :3, :3] = rz @ ry @ rx
        poses[i, :3, 3] = (x[i], y[i], alt[i])
    return poses


def frame_numbers(images: list[Path]) -> list[int]:
    """The frame number of each image (`0000000042.png`: 42), which indexes timestamps and OXTS records: a drive
    cut short keeps the full drive's `timestamps.txt`."""
    try:
        return [int(p.stem) for p in images]
    except ValueError:
        raise KittiRawError(f"{images[0].parent}: image names must be frame numbers (0000000000.png)") from None


def read_oxts(folder: Path, frames: list[int]) -> np.ndarray:
    rows = []
    for frame in frames:
        file = folder / f"{frame:010d}.txt"
        if not file.is_file():
            raise KittiRawError(f"missing {file}: every image needs its OXTS record")
        try:
            values = np.array([float(v) for v in file.read_text().split()])
        except ValueError:
            raise KittiRawError(f"{file}: not a row of numbers") from None
        if len(values) < 6:
            raise KittiRawError(f"{file}: {len(values)} values, an OXTS record has 30")
        rows.append(values[:6])
    return np.array(rows)


def read_timestamps(path: Path) -> np.ndarray:
    """Nanoseconds (since the epoch, UTC as written) of a KITTI raw `timestamps.txt`."""
    if not path.is_file():
        raise KittiRawError(f"missing {path}")
    stamps = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        text = line.strip()
        try:
            whole, _, fraction = text.partition(".")
            seconds = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise KittiRawError(f"{path}:{number}: expected 'YYYY-MM-DD HH:MM:SS.fraction', got {text[:40]!r}") from None
        stamps.append(int(round(seconds)) * 10**9 + int((fraction + "000000000")[:9]))
    return np.array(stamps, np.int64)


def camera_poses(drive: Path, calibration: Path, camera: int, frames: list[int]) -> np.ndarray:
    """World-from-camera (F, 4, 4) of the drive's rectified camera at `frames`, relative to the first of them."""
    world_from_imu = oxts_poses(read_oxts(drive / "oxts" / "data", frames))
    world_from_camera = world_from_imu @ np.linalg.inv(camera_from_imu(calibration, camera))
    return np.linalg.inv(world_from_camera[0]) @ world_from_camera


def camera_matrix(calibration: Path, camera: int) -> np.ndarray:
    projection = read_calibration(calibration / CALIBRATION[0]).get(f"P_rect_0{camera}")
    if projection is None or len(projection) != 12:
        raise KittiRawError(f"{calibration / CALIBRATION[0]} has no P_rect_0{camera}")
    return projection.reshape(3, 4)[:, :3].copy()
