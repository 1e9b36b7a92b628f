"""Multi-scale deformable attention: the dispatch function and its implementations."""
from perception.ops.dispatch import multi_scale_deformable_attention

__all__ = ["multi_scale_deformable_attention"]
