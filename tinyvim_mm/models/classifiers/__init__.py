"""Classifiers."""
from .distill_classifier import DistillImageClassifier

__all__ = ['DistillImageClassifier']
