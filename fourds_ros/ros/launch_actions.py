"""What the launch files share: the perception_node action (imports launch_ros, so only a full ROS 2 install
loads this module)."""
from __future__ import annotations

from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def perception_node(parameters: list, remappings: list) -> Node:
    """perception_node in the `namespace` launch argument, logging to the screen."""
    return Node(package="fourds_ros", executable="perception_node", name="perception_node",
                namespace=LaunchConfiguration("namespace"), output="screen", parameters=parameters,
                remappings=remappings)
