"""Open-set detection with Grounding DINO, free of ROS: model, detector, tracking, video.

Nothing here imports rclpy or message packages; ``nodes/`` is the only ROS glue.
"""
