"""A real rclpy publisher process that sends a scripted sequence of good and bad images.

    python scripted_publisher.py PLAN.json
The plan is a list of steps: {"kind": "good"|"encoding"|"truncated"|"empty", "count": N,
"height": H, "width": W, "start_ns": T0}; stamps advance by 1/30 s from each step's start_ns.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fourds_ros.synthetic.pattern_clip import moving_pattern_clip

PERIOD_NS = 33_333_333


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


def main() -> None:
    plan = json.loads(open(sys.argv[1]).read())
    rclpy.init()
    node = rclpy.create_node("scripted_publisher")
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
    pub = node.create_publisher(Image, "image", qos)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < 2:  # the node and the test's listener have matched this publisher
        if time.monotonic() > deadline:
            sys.exit("scripted_publisher: the node and the listener did not subscribe within 60 s")
        rclpy.spin_once(node, timeout_sec=0.05)
    for step in plan:
        frames = moving_pattern_clip(step["count"], step["height"], step["width"], seed=step.get("seed", 0))
        for i, frame in enumerate(frames):
            pub.publish(image(step["kind"], frame, step["start_ns"] + i * PERIOD_NS))
            time.sleep(1 / 30)  # the camera's pace, not a synchronisation
    # Reliable delivery: every subscriber has acknowledged every sample before the process exits.
    if not pub.wait_for_all_acked(Duration(seconds=60)):
        sys.exit("scripted_publisher: the subscribers did not acknowledge every image within 60 s")
    print("scripted_publisher: done", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
