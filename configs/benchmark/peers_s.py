# TinyViM-S (folded, and its fast inference form) against timm models of 75.8-80.8 %
# top-1: fp16 autocast, channels-last, folded, batch 1024 at 224x224, eager and
# torch.compile. About 5.5 min on one H200 (compilation included).
#   python tools/benchmark.py --preset peers_s --json work_dirs/benchmark/peers_s.json \
#       --plot work_dirs/benchmark/peers_s.png
_base_ = ['./_base_/sections.py']
sections = [_base_.throughput_s]
