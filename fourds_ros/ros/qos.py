"""QoS profiles the package's nodes and tools build from parameters."""
from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = ("best_effort", "reliable")


def qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last `depth` with the named reliability ('reliable' or 'best_effort')."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(reliability=policy, history=HistoryPolicy.KEEP_LAST, depth=depth)
