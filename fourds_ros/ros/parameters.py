"""Declaring node parameters from one table of `Setting` rows: description, unit, range or choices, checked at
start; and the params file written from the same table."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from ..streaming.settings import Setting


class ParameterError(ValueError):
    """A parameter value is of the wrong type, out of range or not one of its choices."""


def _choices_note(p: Setting) -> str:
    return f" (one of: {', '.join(p.choices)})" if p.choices else ""


def params_file_text(table: list[Setting], title: str) -> str:
    """A ROS 2 params file of every default in `table`, each commented with its description and limits.

    The shipped config/*.yaml are this text (a test keeps them equal), so comments cannot drift.
    """
    import yaml

    lines = [f"# {title}. Every parameter is declared with a description and range:",
             "# `ros2 param describe /<node> <name>` on a running node shows them. Generated from the node's",
             "# parameter table: `python -m fourds_ros.ros.perception_node --params-file-text > config/perception.yaml`.",
             "/**:", "  ros__parameters:"]
    group = ""
    for p in table:
        value = yaml.safe_dump(p.default, default_flow_style=True).strip().removesuffix("\n...").strip()
        value = '""' if p.default == "" else value
        unit = f" ({p.unit})" if p.unit else ""
        limits = f" [{p.range[0]}, {p.range[1]}]" if p.range else ""
        prefix, _, name = p.name.rpartition(".")
        if prefix != group:  # dotted names nest: `odometry.standing_deg` is `odometry: {standing_deg: ...}`
            lines.append(f"    {prefix}:")
            group = prefix
        indent = "      " if prefix else "    "
        lines.append(f"{indent}{name}: {value}  # {p.description}{unit}{_choices_note(p)}{limits}")
    return "\n".join(lines) + "\n"


def declare_all(node: Node, table: list[Setting]) -> dict[str, Any]:
    """Declare every parameter of `table` on `node` and return their values, validated."""
    values = {}
    for p in table:
        descriptor = ParameterDescriptor(description=p.description + _choices_note(p))
        if p.range is not None:
            lo, hi = p.range
            if isinstance(p.default, int) and not isinstance(p.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        try:
            value = node.declare_parameter(p.name, p.default, descriptor).value
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            limits = f" (allowed: {p.range[0]}..{p.range[1]})" if p.range else ""
            raise ParameterError(f"parameter '{p.name}': {exc}{limits}") from None
        if p.choices is not None and value not in p.choices:
            raise ParameterError(f"parameter '{p.name}': {value!r} is not one of {', '.join(p.choices)}")
        values[p.name] = value
    for line in unknown_parameters(node, [p.name for p in table]):
        node.get_logger().warning(line)
    return values


def unknown_parameters(node: Node, names: list[str]) -> list[str]:
    """A line for each parameter given to `node` (params file, `-p`, launch) that it does not have: a typo
    there would otherwise leave the default running without a word."""
    from ..model.config import close_names
    given = [name for name in getattr(node, "_parameter_overrides", {})  # rclpy has no public view of them
             if not node.has_parameter(name) and not name.startswith("qos_overrides.")]
    return [f"parameter '{name}' is not one of {node.get_name()}'s and is ignored{close_names([name], names)}"
            for name in sorted(given)]
