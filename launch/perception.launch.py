"""Launch perception_node: `ros2 launch fourds_ros perception.launch.py model_dir:=/path/to/model`; `rviz:=true`
opens RViz 2 on its outputs (config/perception.rviz)."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from fourds_ros.contract import node_topic
from fourds_ros.ros.launch_actions import perception_node


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="input sensor_msgs/Image"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("fourds_ros"), "config",
                                                                  "perception.yaml"]),
                              description="YAML parameters (defaults: share/fourds_ros/config/perception.yaml)"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="model directory (config.json + model.safetensors); empty: the default model"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="onnxruntime, tensorrt or torch"),
        DeclareLaunchArgument("rviz", default_value="false", description="open RViz 2 on the node's outputs"),
        DeclareLaunchArgument("publish_tf", default_value=LaunchConfiguration("rviz"),
                              description="publish odom_frame -> camera on /tf (RViz needs it to place the points)"),
    ]
    node = perception_node(
        [LaunchConfiguration("params_file"),
         {"model_dir": LaunchConfiguration("model_dir"), "backend": LaunchConfiguration("backend"),
          "publish_tf": LaunchConfiguration("publish_tf")}],
        [(node_topic("image"), LaunchConfiguration("image_topic")),
         (node_topic("camera_info"), LaunchConfiguration("camera_info_topic"))])
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([FindPackageShare("fourds_ros"), "config", "perception.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
