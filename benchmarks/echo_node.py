"""A do-nothing rclpy node (allocator and executor as the vp3d_ros nodes): each image on ``image`` is answered by an empty PointCloud2 on
``echo`` with the image's header. Its round trip is the ROS transport floor that any Python
node on camera images pays on this machine (image over DDS in, a small message out)."""
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2


def main():
    from vp3d_ros.core.allocator import keep_large_buffers
    from vp3d_ros.nodes.common import make_executor
    keep_large_buffers()  # as the vp3d_ros nodes do
    rclpy.init()
    node = Node('echo')
    pub = node.create_publisher(PointCloud2, 'echo', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(Image, 'image', lambda m: pub.publish(PointCloud2(header=m.header)),
                             qos_profile_sensor_data)
    node.get_logger().info('echo ready')
    executor = make_executor(node.context)  # the executor the vp3d_ros nodes spin on
    executor.add_node(node)
    try:
        while rclpy.ok():  # SIGTERM: rclpy's handler shuts the context down
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == '__main__':
    main()
