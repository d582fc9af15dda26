"""Photographs and meshes for photo-real synthetic scenes, found where the set-up step installed them.

Nothing is vendored (ASSETS.md lists each source and its licence): photographs come from Debian's wallpaper
packages (`scripts/bootstrap.sh` installs them when it may use apt) and from the textures that ship in
`pybullet_data`; meshes from `pybullet_data/random_urdfs` (1000 procedurally generated objects). MuJoCo loads PNG
textures only, so each photograph is cut to a square, resized and cached as PNG once (`cache_dir`). A file that
fails to load is skipped, logged once and counted (`AssetLibrary.skipped`).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger(__name__)
PHOTO_DIRS = (Path("/usr/share/wallpapers"), Path("/usr/share/backgrounds"))
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
TEXTURE_SIZE = 512
# Wallpaper packages ship small previews beside each photograph; they add nothing but duplicates.
SKIPPED_NAMES = ("screenshot", "preview", "thumbnail")
MIN_PHOTO_SIDE = 256


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fourds_ros" / "textures"


def _pybullet_data() -> Path | None:
    try:
        import pybullet_data
    except ImportError:
        return None
    return Path(pybullet_data.getDataPath())


@dataclass
class AssetLibrary:
    """Photo textures (PNG paths) and meshes (OBJ paths with their half extent in model units)."""
    textures: list[Path]
    meshes: list[tuple[Path, float]]
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def discover(cls, photo_dirs: tuple[Path, ...] | list[Path] | None = None, cache_dir: Path | None = None,
                 max_meshes: int = 200) -> "AssetLibrary":
        """Every usable photograph under `photo_dirs` (default: the wallpaper folders and pybullet_data) and the
        first `max_meshes` random meshes of pybullet_data. Sorted, so a seed picks the same assets on every
        machine that has the same packages."""
        data = _pybullet_data()
        if photo_dirs is None:
            photo_dirs = [*PHOTO_DIRS, *([data] if data else [])]
        cache_dir = cache_dir or default_cache_dir()
        skipped: list[str] = []
        textures = []
        for path in sorted(p for d in photo_dirs if Path(d).is_dir() for p in Path(d).rglob("*")
                           if p.suffix.lower() in PHOTO_SUFFIXES and not any(s in p.name.lower() for s in SKIPPED_NAMES)):
            texture = _cached_texture(path, cache_dir, skipped)
            if texture is not None:
                textures.append(texture)
        meshes = []
        if data is not None:
            for path in sorted((data / "random_urdfs").glob("*/[0-9]*.obj"))[:max_meshes]:
                half = _mesh_half_extent(path, skipped)
                if half:
                    meshes.append((path, half))
        return cls(textures, meshes, skipped)

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def default() -> "AssetLibrary":
        """`discover()` with the default folders, once per process (skipped files are logged once)."""
        return AssetLibrary.discover()

    def describe(self) -> str:
        text = f"{len(self.textures)} photo textures, {len(self.meshes)} meshes"
        return text + (f", {len(self.skipped)} files skipped" if self.skipped else "")


def _skip(skipped: list[str], path: Path, why: str) -> None:
    LOG.warning("asset skipped: %s (%s)", path, why)
    skipped.append(str(path))


def _cached_texture(path: Path, cache_dir: Path, skipped: list[str]) -> Path | None:
    key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}:{TEXTURE_SIZE}".encode()).hexdigest()[:16]
    out = cache_dir / f"{key}.png"
    if out.is_file():
        return out
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        _skip(skipped, path, "not a readable image")
        return None
    height, width = image.shape[:2]
    if min(height, width) < MIN_PHOTO_SIDE:
        return None  # icons and small swatches, not photographs: not an error
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = cv2.resize(image[top:top + side, left:left + side], (TEXTURE_SIZE, TEXTURE_SIZE),
                        interpolation=cv2.INTER_AREA)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(f".{os.getpid()}.png")
    cv2.imwrite(str(temporary), square)
    temporary.replace(out)  # atomic: parallel generators may cache the same photograph
    return out


def _mesh_half_extent(path: Path, skipped: list[str]) -> float | None:
    """Half the largest side of the mesh's bounding box, to scale it to a chosen size."""
    try:
        vertices = np.array([line.split()[1:4] for line in path.read_text(errors="replace").splitlines()
                             if line.startswith("v ")], float)
    except (OSError, ValueError) as exc:
        _skip(skipped, path, str(exc))
        return None
    if len(vertices) < 4 or not np.isfinite(vertices).all():
        _skip(skipped, path, "no usable vertices")
        return None
    half = float((vertices.max(0) - vertices.min(0)).max() / 2)
    return half if half > 0 else None
