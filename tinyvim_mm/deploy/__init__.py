"""Deployment: the fused inference form, CUDA-graph replay and ONNX export."""
from tinyvim_mm.ops.cuda_graphs import (check_max_graphs, cuda_graphs_enabled,
                                        disable_cuda_graphs, enable_cuda_graphs)
from .onnx import export_onnx, onnx_errors
from .optimize import check_inference_options, optimize_for_inference

__all__ = ['check_inference_options', 'check_max_graphs', 'cuda_graphs_enabled',
           'disable_cuda_graphs', 'enable_cuda_graphs', 'export_onnx', 'onnx_errors',
           'optimize_for_inference']
