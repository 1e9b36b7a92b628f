"""ROS 2 glue over :mod:`perception`: message conversions (pure functions), the detector node and a
video-source node. Only this package imports rclpy and message packages."""
