"""Replay a recorded bag into perception_node and record its outputs (a ROS 2 install with rosbag2).

`ros2 launch fourds_ros replay_eval.launch.py bag:=bags/seed7 model_dir:=MODEL out:=reports/seed7/outputs_bag`,
then score the recording with `fourds-ros eval` on the input bag, or use `fourds-ros replay`, which runs this
same graph without the ros2 CLI.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from fourds_ros.contract import RECORDED_OUTPUTS, node_topic


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else f"/{topic}"


def generate_launch_description():
    bag, out, rate = LaunchConfiguration("bag"), LaunchConfiguration("out"), LaunchConfiguration("rate")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 directory with /camera/image_raw"),
        DeclareLaunchArgument("model_dir", description="model directory"),
        DeclareLaunchArgument("out", description="bag directory the outputs are recorded to"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("backend", default_value="onnxruntime"),
        Node(package="fourds_ros", executable="perception_node", name="perception_node", output="screen",
             parameters=[PathJoinSubstitution([FindPackageShare("fourds_ros"), "config", "perception.yaml"]),
                         {"model_dir": LaunchConfiguration("model_dir"), "backend": LaunchConfiguration("backend"),
                          "use_sim_time": True}],
             remappings=[(node_topic("image"), "/camera/image_raw"), (node_topic("camera_info"), "/camera/camera_info")]),
        ExecuteProcess(cmd=["ros2", "bag", "record", "-o", out, *(_absolute(node_topic(n)) for n in RECORDED_OUTPUTS)],
                       output="screen"),
        ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate], output="screen"),
    ])
