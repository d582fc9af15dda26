"""A random MuJoCo room: textured floor and walls, static objects, mocap-driven moving objects, a camera rig.

Everything that moves is a mocap body, so poses are set exactly each frame
(no physics). Textures carry random marks so that points are trackable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROOM_HALF = 5.0
WALL_HEIGHT = 3.5


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
                fovy_deg: float = 60.0, people: bool = False) -> tuple[str, list[SceneObject]]:
    """MJCF text of a random room, and its objects (static first, then moving: random shapes, or
    people-sized capsules with `people`)."""
    assets, bodies, objects = [], [], []
    assets.append(f'<texture name="floor_tex" type="2d" builtin="checker" rgb1="{_colour(rng)}" rgb2="{_colour(rng)}" '
                  f'width="512" height="512" mark="random" random="0.15" markrgb="{_colour(rng)}"/>')
    assets.append('<material name="floor_mat" texture="floor_tex" texrepeat="6 6"/>')
    for i in range(4):
        assets.append(f'<texture name="wall_tex{i}" type="2d" builtin="checker" rgb1="{_colour(rng)}" '
                      f'rgb2="{_colour(rng)}" width="256" height="256" mark="random" random="0.2" '
                      f'markrgb="{_colour(rng)}"/>')
        assets.append(f'<material name="wall_mat{i}" texture="wall_tex{i}" texrepeat="4 2"/>')
    walls = [(0, ROOM_HALF, 0), (0, -ROOM_HALF, 0), (ROOM_HALF, 0, 90), (-ROOM_HALF, 0, 90)]
    for i, (x, y, yaw) in enumerate(walls):
        bodies.append(f'<geom name="wall{i}" type="box" pos="{x} {y} {WALL_HEIGHT / 2}" euler="0 0 {yaw}" '
                      f'size="{ROOM_HALF} 0.05 {WALL_HEIGHT / 2}" material="wall_mat{i}"/>')
    shapes = ["box", "sphere", "cylinder"]
    for i in range(num_static + num_moving):
        moving = i >= num_static
        name = f"{'mover' if moving else 'object'}{i}"
        half = float(rng.uniform(0.2, 0.45))
        shape = shapes[int(rng.integers(len(shapes)))]
        size = {"box": f"{half} {half * rng.uniform(0.6, 1.4):.3f} {half}", "sphere": f"{half}",
                "cylinder": f"{half} {half}"}[shape]
        if moving and people:  # half_size stays the height of the body's centre above the floor
            shape, half = "capsule", PERSON_RADIUS + PERSON_HALF_LENGTH
            size = f"{PERSON_RADIUS} {PERSON_HALF_LENGTH}"
        builtin = "checker" if rng.random() < 0.5 else "gradient"
        assets.append(f'<texture name="{name}_tex" type="2d" builtin="{builtin}" rgb1="{_colour(rng)}" '
                      f'rgb2="{_colour(rng)}" width="128" height="128" mark="random" random="0.3" '
                      f'markrgb="{_colour(rng)}"/>')
        assets.append(f'<material name="{name}_mat" texture="{name}_tex" texrepeat="2 2"/>')
        x, y = rng.uniform(-ROOM_HALF + 1, ROOM_HALF - 1, 2)
        mocap = ' mocap="true"' if moving else ""
        bodies.append(f'<body name="{name}_body" pos="{x:.3f} {y:.3f} {half:.3f}"{mocap}>'
                      f'<geom name="{name}" type="{shape}" size="{size}" material="{name}_mat"/></body>')
        objects.append(SceneObject(name, moving, half))
    xml = f"""<mujoco model="fourds_synthetic_room">
  <visual>
    <global offwidth="{width}" offheight="{height}" fovy="{fovy_deg}"/>
    <quality shadowsize="0"/>
    <map znear="0.01" zfar="50"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
  </visual>
  <asset>
    {chr(10).join(assets)}
  </asset>
  <worldbody>
    <light pos="0 0 {WALL_HEIGHT}" dir="0 0 -1" castshadow="false" diffuse="0.4 0.4 0.4"/>
    <geom name="floor" type="plane" size="{ROOM_HALF} {ROOM_HALF} 0.1" material="floor_mat"/>
    {chr(10).join(bodies)}
    <body name="camera_rig" mocap="true" pos="0 0 1.5">
      <camera name="camera" fovy="{fovy_deg}" pos="0 0 0"/>
    </body>
  </worldbody>
</mujoco>"""
    return xml, objects
