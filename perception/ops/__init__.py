"""Multi-scale deformable attention: the dispatch function and its implementations."""
from perception.ops.dispatch import IMPLEMENTATIONS, describe_implementation, multi_scale_deformable_attention

__all__ = ["IMPLEMENTATIONS", "describe_implementation", "multi_scale_deformable_attention"]
