"""Evaluation of detections against ground truth with maintained evaluators."""
