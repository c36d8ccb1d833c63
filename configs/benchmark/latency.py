# Latency at batch 1, 8 and 32 (median and p90 of single calls), TinyViM-S/B/L (folded
# and fast) and the peers of each, eager and from a CUDA graph; then TinyViM-S fast and
# its peers at batch 1 compiled and from CUDA graphs. About 8 min on one H200 for the
# first three, 4.5 more for the compiled one (measured, 2026-12-04).
_base_ = ['./_base_/sections.py']
sections = [_base_.latency_s, _base_.latency_b, _base_.latency_l, _base_.latency_s_compiled]
