"""Running ROS 2 graphs from Python: node processes on a private domain, and topic recorders.

Used by the replay evaluation, the node benchmark and the tests. Every process
gets the shipped Fast DDS profile (shared memory + loopback UDP) and
localhost-only discovery; processes start in their own session and are
stopped with SIGINT, then killed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

FASTDDS_PROFILE = Path(__file__).resolve().parents[1] / "data" / "fastdds_localhost.xml"
BIN = Path(sys.executable).parent


def default_params_file() -> Path:
    """perception.yaml of this checkout, or of the installed package (share/fourds_ros/config)."""
    for candidate in (Path(__file__).resolve().parents[2] / "config" / "perception.yaml",
                      Path(sys.prefix) / "share" / "fourds_ros" / "config" / "perception.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("perception.yaml not found in the checkout or in share/fourds_ros/config")


def ros_env(domain: int, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               FASTRTPS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE), PYTHONUNBUFFERED="1")
    return env


class NodeProcess:
    """A console script in its own process, logging to a file; stopped with SIGINT, then killed.

    `executable` runs another installation's script (a colcon workspace, another environment) instead of this
    environment's `name`, with `env` (default: this process's) as the base of its environment.
    """

    def __init__(self, name: str, args: list[str], domain: int, log_dir: Path, executable: Path | None = None,
                 env: dict[str, str] | None = None):
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(executable or BIN / name), *map(str, args)], env=ros_env(domain, env),
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                raise AssertionError(f"process exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.log()}")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


class TopicRecorder:
    """Subscribes in this process (its own rclpy context) and records (receive time, message) per topic."""

    def __init__(self, domain: int, topics: dict[str, type], reliable: bool = True):
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(f"test_listener_{domain}", context=self.context)
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         history=HistoryPolicy.KEEP_LAST, depth=200)
        self.received: dict[str, list] = {topic: [] for topic in topics}
        self.lock = threading.Lock()
        self.subscriptions = [self.node.create_subscription(msg_type, topic, self._recorder(topic), qos)
                              for topic, msg_type in topics.items()]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _recorder(self, topic: str) -> Callable:
        def record(msg) -> None:
            with self.lock:
                self.received[topic].append((time.time(), msg))
        return record

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self.context.ok():
                    raise
                return

    def messages(self, topic: str) -> list:
        with self.lock:
            return [m for _, m in self.received[topic]]

    def timed(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str,
                   state: Callable[[], str] | None = None, progress: Callable[[], object] | None = None) -> None:
        """Until `predicate()` holds; on timeout an AssertionError naming `what` and, with it, `state()`. With
        `progress`, the timeout is how long its value may stay the same: a slow or loaded machine that is still
        working is waited for, a stuck one is not."""
        deadline, seen = time.monotonic() + timeout, None if progress is None else progress()
        while time.monotonic() < deadline:
            if predicate():
                return
            if progress is not None and (now := progress()) != seen:
                deadline, seen = time.monotonic() + timeout, now
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}" + (f" ({state()})" if state else ""))

    def wait_until_matched(self, timeout: float, topics: list[str] | None = None) -> None:
        """Until every recorded topic (or those of `topics`) has a matched publisher (discovered and
        QoS-compatible): a message sent before that is not delivered."""
        chosen = [s for s, topic in zip(self.subscriptions, self.received) if topics is None or topic in topics]
        self.wait_until(lambda: all(s.get_publisher_count() > 0 for s in chosen), timeout,
                        f"publishers of {topics or sorted(self.received)}")

    def last_diagnostics(self, camera: str = "") -> dict[str, str]:
        """The key/values of the newest /diagnostics message ({} before the first; needs '/diagnostics' recorded),
        a rig camera's by its name."""
        msgs = self.messages("/diagnostics")
        return diagnostics_values(msgs[-1], camera) if msgs else {}

    def wait_for_node_outputs(self, per_frame_topics: list[str], timeout: float, min_received: int = 1) -> dict:
        """Wait until perception_node has emitted (or dropped) every frame it accepted and this recorder holds
        the message of every emitted frame on each of `per_frame_topics`; returns the node's last diagnostics.

        Counting what arrived matters as much as the node's own count: a reliable sample lost in a burst is
        only resent on DDS's next heartbeat, which can be seconds later.
        """
        def done() -> bool:
            d = self.last_diagnostics()
            if not d or int(d["frames_received"]) < min_received or int(d["frames_accepted"]) == 0:
                return False
            emitted = int(d["frames_emitted"])
            return emitted + int(d["frames_dropped"]) >= int(d["frames_accepted"]) and \
                all(len(self.received[t]) >= emitted for t in per_frame_topics)
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                counts = {t: len(self.received[t]) for t in per_frame_topics}
                raise TimeoutError(f"perception_node's outputs did not all arrive within {timeout} s: "
                                   f"diagnostics {self.last_diagnostics()}, received {counts}")
            time.sleep(0.1)
        return self.last_diagnostics()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(5)


def diagnostics_values(msg, camera: str = "") -> dict[str, str]:
    """One camera's status (the only one when `camera` is ''), as key/values."""
    status = msg.status[0] if not camera else next(s for s in msg.status if s.name.endswith(f" {camera}"))
    return {kv.key: kv.value for kv in status.values}
