"""Classification heads."""
from .distill_head import DistillClsHead

__all__ = ['DistillClsHead']
