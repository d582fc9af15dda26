"""A real rclpy publisher process that sends a scripted sequence of good and bad images.

    python scripted_publisher.py PLAN.json
The plan is a list of steps: {"kind": "good"|"encoding"|"truncated"|"empty", "count": N,
"height": H, "width": W, "start_ns": T0}; stamps advance by 1/30 s from each step's start_ns.
{"kind": "fuzz", "count": N, "good_every": K, "height": H, "width": W, "start_ns": T0, "seed": S} sends N
broken messages (random sizes, steps, encodings and lengths, each broken for at least one reason, at random
stamps) with a good H x W frame after every K of them (its stamps advance by 1/30 s from T0).
A step with "clock": true also publishes each frame's stamp on /clock first (a bag played with --clock).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from fourds_ros.synthetic.pattern_clip import moving_pattern_clip

PERIOD_NS = 33_333_333
# Bytes per pixel of the encodings the fuzzer sends; the last ones are not ROS encodings the node takes.
FUZZ_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4, "yuv422": 2, "yuv422_yuy2": 2,
                  "bayer_rggb8": 1, "bayer_gbrg8": 1, "mono16": 2, "rgb16": 6, "bgr16": 6, "nv21": 2, "16UC1": 2,
                  "": 3, "RGB8": 3}


def image(kind: str, frame: np.ndarray, stamp_ns: int) -> Image:
    h, w = frame.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=frame.tobytes())
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    if kind == "encoding":
        msg.encoding = "nv21"  # a camera layout the node does not take
    elif kind == "truncated":
        msg.data = frame.tobytes()[: len(msg.data) // 2]
    elif kind == "empty":
        msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
    return msg


def fuzz_image(rng: np.random.Generator) -> Image:
    """A message that is broken for at least one reason, never bigger than 64 KiB."""
    encoding = str(rng.choice(list(FUZZ_ENCODINGS)))
    bpp = FUZZ_ENCODINGS[encoding]
    h, w = (int(v) for v in rng.integers(0, 3000, 2))
    step = w * bpp + int(rng.integers(0, 8))
    problem = int(rng.integers(4))
    if problem == 0:  # absurd size, little data
        h, w = (int(v) for v in rng.integers(20_000, 200_000, 2))
        step = w * bpp
        length = int(rng.integers(0, 65536))
    elif problem == 1:  # a step shorter than a row
        step = max(0, w * bpp - int(rng.integers(1, 16)))
        length = int(rng.integers(0, 65536))
    elif problem == 2:  # data shorter than the size needs
        needed = step * max(h - 1, 0) + w * bpp
        length = int(rng.integers(0, max(1, min(needed, 65536))))
    else:  # a layout the node does not take, or odd sizes where pairs are packed
        encoding = str(rng.choice(["nv21", "16UC1", "", "RGB8", "yuv422", "mono16"]))
        if encoding == "yuv422":
            w |= 1
        elif encoding == "mono16":
            step |= 1
        length = int(rng.integers(0, 65536))
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(rng.integers(2)), step=step,
                data=rng.integers(0, 256, length, dtype=np.uint8).tobytes())
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9))
    return msg


def fuzz(pub, step: dict) -> None:
    rng = np.random.default_rng(step.get("seed", 0))
    every = step["good_every"]
    frames = moving_pattern_clip(step["count"] // every, step["height"], step["width"], seed=step.get("seed", 0))
    for i in range(step["count"]):
        pub.publish(fuzz_image(rng))
        time.sleep(0.002)  # a fast camera's pace, not a synchronisation
        if (i + 1) % every == 0:
            j = (i + 1) // every - 1
            pub.publish(image("good", frames[j], step["start_ns"] + j * PERIOD_NS))


def main() -> None:
    plan = json.loads(open(sys.argv[1]).read())
    rclpy.init()
    node = rclpy.create_node("scripted_publisher")
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
    pub = node.create_publisher(Image, "image", qos)
    clock = node.create_publisher(Clock, "/clock", qos) if any(step.get("clock") for step in plan) else None
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < 2 or clock is not None and clock.get_subscription_count() < 1:
        # the node and the test's listener have matched the image publisher, the node the clock
        if time.monotonic() > deadline:
            sys.exit("scripted_publisher: the node and the listener did not subscribe within 60 s")
        rclpy.spin_once(node, timeout_sec=0.05)
    for step in plan:
        if step["kind"] == "fuzz":
            fuzz(pub, step)
            continue
        frames = moving_pattern_clip(step["count"], step["height"], step["width"], seed=step.get("seed", 0))
        for i, frame in enumerate(frames):
            stamp = step["start_ns"] + i * PERIOD_NS
            if step.get("clock"):
                tick = Clock()
                tick.clock.sec, tick.clock.nanosec = divmod(stamp, 1_000_000_000)
                clock.publish(tick)
            pub.publish(image(step["kind"], frame, stamp))
            time.sleep(1 / 30)  # the camera's pace, not a synchronisation
    # Reliable delivery: every subscriber has acknowledged every sample before the process exits.
    if not pub.wait_for_all_acked(Duration(seconds=60)):
        sys.exit("scripted_publisher: the subscribers did not acknowledge every image within 60 s")
    print("scripted_publisher: done", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
