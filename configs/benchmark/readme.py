# What the README's inference tables and plot need, in one process, in under 9 minutes
# (its measurements took 6.2 min on one H100, 2026-12-05; the time budget skips what would
# not fit, the last sections first):
#   python tools/benchmark.py --preset readme --json work_dirs/benchmark/readme.json \
#       --plot work_dirs/benchmark/readme.png
# 1. TinyViM-S fast and its 7 peers, eager and torch.compile (the Pareto plot's core);
# 2. TinyViM-B and -L fast and their peers, eager;
# 3. Mask R-CNN and Semantic FPN with TinyViM-B against ResNet-50, end to end, each
#    backbone replayed from CUDA graphs (as `tools/test.py --deploy` runs TinyViM), and
#    the backbones alone at 2x3x800x1333 from a CUDA graph.
# Training does not fit beside them (its default column alone compiles for ~2.5 min): the
# README's training table is `--preset train_s` / `train_teacher`, each its own run.
# The full tables: peers_s, peers_b, peers_l, latency (batch 1, 8, 32), dense, train.
_base_ = ['./_base_/sections.py']

eager_only = [dict(name='eager')]
graph_only = [dict(name='CUDA graph', cuda_graphs=True)]
quick = dict(warmup=3, repeats=3, min_time=0.6)  # batch 1024: samples agree to ~0.1 %
sections = [
    dict(_base_.throughput_s, models=['tinyvim-s:fast'] + _base_.peers_s,
         reference='tinyvim-s:fast', timing=quick),
    dict(_base_.throughput_b, models=['tinyvim-b:fast'] + _base_.peers_b,
         reference='tinyvim-b:fast', columns=eager_only, timing=quick),
    dict(_base_.throughput_l, models=['tinyvim-l:fast'] + _base_.peers_l,
         reference='tinyvim-l:fast', columns=eager_only, timing=quick),
    dict(_base_.dense_det, models=[_base_.dense_det.models[i] for i in (1, 4)],
         reference=_base_.dense_det.models[4].label),
    dict(_base_.dense_seg, models=[_base_.dense_seg.models[i] for i in (1, 4)],
         reference=_base_.dense_seg.models[4].label),
    dict(_base_.backbone_det, models=_base_.backbone_det.models[1:], columns=graph_only),
]
time_budget = 515
