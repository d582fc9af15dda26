"""The entry point every node shares: build it, spin it, and turn start-up errors into one line and exit 2."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.node import Node


def run_node(build: Callable[[], Node], program: str, start_errors: tuple[type[Exception], ...],
             args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = build()
    except start_errors as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, SystemExit, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
