"""A random MuJoCo room: textured floor and walls, static objects, mocap-driven moving objects, a camera rig.

Everything that moves is a mocap body, so poses are set exactly each frame
(no physics). Two looks (`STYLES`): "procedural", MuJoCo's checker and gradient
textures with random marks (the first generator), and "photo", photographs on
the floor, walls, ceiling and objects, meshes among the primitives, furniture-
sized boxes, and random lights and materials (assets.py finds the photographs
and meshes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .assets import AssetLibrary

ROOM_HALF = 5.0
WALL_HEIGHT = 3.5
STYLES = ("procedural", "photo")


@dataclass
class SceneObject:
    name: str  # the geom's name; its body is named "<name>_body"
    moving: bool
    half_size: float


def _colour(rng: np.random.Generator) -> str:
    return " ".join(f"{v:.3f}" for v in rng.uniform(0.1, 0.95, 3))


# A walking person: a capsule 1.74 m tall, 0.44 m across (radius, half-length of the cylinder part).
PERSON_RADIUS, PERSON_HALF_LENGTH = 0.22, 0.65


def build_scene(rng: np.random.Generator, height: int, width: int, num_static: int = 6, num_moving: int = 3,
                fovy_deg: float = 60.0, people: bool = False, style: str = "procedural",
                assets: AssetLibrary | None = None) -> tuple[str, list[SceneObject]]:
    """MJCF text of a random room, and its objects (static first, then moving: random shapes, or
    people-sized capsules with `people`). `style` "photo" needs `assets` with photographs."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    photo = style == "photo"
    if photo and (assets is None or not assets.textures):
        raise ValueError("the photo style needs photographs: none found (scripts/bootstrap.sh installs them; "
                         "ASSETS.md lists the sources)")
    look = _PhotoLook(rng, assets) if photo else _ProceduralLook(rng)
    assets_xml, bodies, objects = [], [], []
    assets_xml += look.material("floor_mat", 512, repeat=6)
    for i in range(4):
        assets_xml += look.material(f"wall_mat{i}", 256, repeat=(4, 2))
    walls = [(0, ROOM_HALF, 0), (0, -ROOM_HALF, 0), (ROOM_HALF, 0, 90), (-ROOM_HALF, 0, 90)]
    for i, (x, y, yaw) in enumerate(walls):
        bodies.append(f'<geom name="wall{i}" type="box" pos="{x} {y} {WALL_HEIGHT / 2}" euler="0 0 {yaw}" '
                      f'size="{ROOM_HALF} 0.05 {WALL_HEIGHT / 2}" material="wall_mat{i}"/>')
    if photo:  # a ceiling: what a camera indoors sees above the walls
        assets_xml += look.material("ceiling_mat", 256, repeat=3)
        bodies.append(f'<geom name="ceiling" type="box" pos="0 0 {WALL_HEIGHT + 0.05}" '
                      f'size="{ROOM_HALF} {ROOM_HALF} 0.05" material="ceiling_mat"/>')
        num_static = int(rng.integers(12, 25))
    shapes = ["box", "sphere", "cylinder"]
    for i in range(num_static + num_moving):
        moving = i >= num_static
        name = f"{'mover' if moving else 'object'}{i}"
        half = float(rng.uniform(0.2, 0.45))
        shape = shapes[int(rng.integers(len(shapes)))]
        size = {"box": f"{half} {half * rng.uniform(0.6, 1.4):.3f} {half}", "sphere": f"{half}",
                "cylinder": f"{half} {half}"}[shape]
        extra = ""
        if photo and not moving:
            kind = rng.choice(["primitive", "furniture", "mesh"], p=[0.4, 0.3, 0.3])
            if kind == "furniture":  # tables, shelves and cabinets: wide boxes up to 2 m tall
                shape, half = "box", float(rng.uniform(0.35, 1.0))
                size = f"{rng.uniform(0.3, 1.2):.3f} {rng.uniform(0.25, 0.6):.3f} {half:.3f}"
            elif kind == "mesh" and assets.meshes:
                path, mesh_half = assets.meshes[int(rng.integers(len(assets.meshes)))]
                scale = f"{half / mesh_half:.5f}"
                assets_xml.append(f'<mesh name="{name}_mesh" file="{path}" scale="{scale} {scale} {scale}"/>')
                shape, size, extra = "mesh", None, f' mesh="{name}_mesh"'
        if moving and people:  # half_size stays the height of the body's centre above the floor
            shape, half = "capsule", PERSON_RADIUS + PERSON_HALF_LENGTH
            size = f"{PERSON_RADIUS} {PERSON_HALF_LENGTH}"
        assets_xml += look.material(f"{name}_mat", 128, repeat=2, plain=shape == "mesh")
        x, y = rng.uniform(-ROOM_HALF + 1, ROOM_HALF - 1, 2)
        mocap = ' mocap="true"' if moving else ""
        yaw = f' euler="0 0 {rng.uniform(0, 180):.1f}"' if photo and not moving else ""
        size_attr = f' size="{size}"' if size else ""
        bodies.append(f'<body name="{name}_body" pos="{x:.3f} {y:.3f} {half:.3f}"{mocap}{yaw}>'
                      f'<geom name="{name}" type="{shape}"{size_attr}{extra} material="{name}_mat"/></body>')
        objects.append(SceneObject(name, moving, half))
    visual, lights = look.lighting()
    xml = f"""<mujoco model="fourds_synthetic_room">
  <visual>
    <global offwidth="{width}" offheight="{height}" fovy="{fovy_deg}"/>
    <map znear="0.01" zfar="50"/>
    {visual}
  </visual>
  <asset>
    {chr(10).join(assets_xml)}
  </asset>
  <worldbody>
    {lights}
    <geom name="floor" type="plane" size="{ROOM_HALF} {ROOM_HALF} 0.1" material="floor_mat"/>
    {chr(10).join(bodies)}
    <body name="camera_rig" mocap="true" pos="0 0 1.5">
      <camera name="camera" fovy="{fovy_deg}" pos="0 0 0"/>
    </body>
  </worldbody>
</mujoco>"""
    return xml, objects


class _ProceduralLook:
    """MuJoCo's own checker and gradient textures with random marks (trackable), one fixed light."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def material(self, name: str, size: int, repeat, plain: bool = False) -> list[str]:
        rng = self.rng
        builtin = "checker" if size > 128 or rng.random() < 0.5 else "gradient"
        marks = {512: 0.15, 256: 0.2}.get(size, 0.3)
        repeat = " ".join(str(r) for r in np.broadcast_to(repeat, 2))
        return [f'<texture name="{name}_tex" type="2d" builtin="{builtin}" rgb1="{_colour(rng)}" '
                f'rgb2="{_colour(rng)}" width="{size}" height="{size}" mark="random" random="{marks}" '
                f'markrgb="{_colour(rng)}"/>',
                f'<material name="{name}" texture="{name}_tex" texrepeat="{repeat}"/>']

    def lighting(self) -> tuple[str, str]:
        return ('<quality shadowsize="0"/>\n    '
                '<headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>',
                f'<light pos="0 0 {WALL_HEIGHT}" dir="0 0 -1" castshadow="false" diffuse="0.4 0.4 0.4"/>')


class _PhotoLook:
    """Photographs as textures, random specularity, and one to three tinted lights (one casting shadows)."""

    def __init__(self, rng: np.random.Generator, assets: AssetLibrary):
        self.rng, self.assets = rng, assets

    def material(self, name: str, size: int, repeat, plain: bool = False) -> list[str]:
        rng = self.rng
        shine = f'specular="{rng.uniform(0, 0.5):.2f}" shininess="{rng.uniform(0, 0.8):.2f}"'
        if plain:  # meshes without texture coordinates: a colour
            return [f'<material name="{name}" rgba="{_colour(rng)} 1" {shine}/>']
        photo = self.assets.textures[int(rng.integers(len(self.assets.textures)))]
        repeat = " ".join(f"{r * rng.uniform(0.25, 1.0):.2f}" for r in np.broadcast_to(repeat, 2))
        tint = " ".join(f"{v:.2f}" for v in rng.uniform(0.75, 1.0, 3))
        return [f'<texture name="{name}_tex" type="2d" file="{photo}"/>',
                f'<material name="{name}" texture="{name}_tex" texrepeat="{repeat}" texuniform="true" '
                f'rgba="{tint} 1" {shine}/>']

    def lighting(self) -> tuple[str, str]:
        rng = self.rng
        ambient, diffuse = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.6)
        visual = (f'<quality shadowsize="1024"/>\n    <headlight ambient="{ambient:.2f} {ambient:.2f} {ambient:.2f}" '
                  f'diffuse="{diffuse:.2f} {diffuse:.2f} {diffuse:.2f}" specular="0.1 0.1 0.1"/>')
        lights = []
        for i in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(-ROOM_HALF + 1, ROOM_HALF - 1, 2)
            warmth = rng.uniform(-0.15, 0.15)  # warm (tungsten) to cool (daylight)
            colour = np.clip(rng.uniform(0.3, 0.7) * np.array([1 + warmth, 1.0, 1 - warmth]), 0, 1)
            lights.append(f'<light pos="{x:.2f} {y:.2f} {WALL_HEIGHT - 0.2}" dir="0 0 -1" '
                          f'castshadow="{"true" if i == 0 else "false"}" '
                          f'diffuse="{" ".join(f"{c:.2f}" for c in colour)}"/>')
        return visual, "\n    ".join(lights)
