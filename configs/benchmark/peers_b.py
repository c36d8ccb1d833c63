# TinyViM-B (folded, and its fast inference form) against timm models of 80.8-82.4 %
# top-1, as peers_s.py. About 4 min on one H200.
_base_ = ['./_base_/sections.py']
sections = [_base_.throughput_b]
