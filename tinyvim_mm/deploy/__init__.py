"""Deployment: the fused inference form and ONNX export."""
from .onnx import export_onnx, onnx_errors
from .optimize import optimize_for_inference

__all__ = ['export_onnx', 'onnx_errors', 'optimize_for_inference']
