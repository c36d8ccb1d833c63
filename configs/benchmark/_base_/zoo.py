# ImageNet-1k top-1 (%) of the benchmarked models, for the speed tables and the
# throughput-vs-top-1 plot (tinyvim_mm.benchmark.report).
#
# TinyViM: the paper's Table 2, 300 epochs (the schedule of the peers below);
# `released`: the released checkpoints, 1000 epochs.
# timm models: timm's results/results-imagenet.csv (huggingface/pytorch-image-models
# at aa4b585, 2026-08), for the weights tag timm.create_model picks by default
# (`tag`), evaluated at 224x224 unless `eval_size` says otherwise. Every benchmark
# times them at the size the preset gives (224x224): FastViT's top-1 is at 256x256.
timm_csv = 'timm results/results-imagenet.csv (pytorch-image-models aa4b585)'
paper = 'TinyViM paper, Table 2 (300 epochs)'
top1 = {
    'tinyvim-s': dict(top1=79.2, released=80.3, source=paper),
    'tinyvim-b': dict(top1=81.2, released=82.1, source=paper),
    'tinyvim-l': dict(top1=83.3, released=83.6, source=paper),
    # about TinyViM-S
    'timm:mobileone_s1': dict(top1=75.760, tag='apple_in1k', source=timm_csv),
    'timm:mambaout_femto': dict(top1=78.880, tag='in1k', source=timm_csv),
    'timm:efficientvit_b1': dict(top1=79.254, tag='r224_in1k', source=timm_csv),
    'timm:fastvit_t12': dict(top1=79.276, tag='apple_in1k', eval_size=256, source=timm_csv),
    'timm:efficientformerv2_s1': dict(top1=79.684, tag='snap_dist_in1k', source=timm_csv),
    'timm:efficientformer_l1': dict(top1=80.502, tag='snap_dist_in1k', source=timm_csv),
    'timm:repvit_m1_1': dict(top1=80.826, tag='dist_300e_in1k', source=timm_csv),
    # about TinyViM-B
    'timm:fastvit_sa12': dict(top1=80.846, tag='apple_in1k', eval_size=256, source=timm_csv),
    'timm:efficientformerv2_s2': dict(top1=82.156, tag='snap_dist_in1k', source=timm_csv),
    'timm:efficientvit_b2': dict(top1=82.162, tag='r224_in1k', source=timm_csv),
    'timm:repvit_m1_5': dict(top1=82.382, tag='dist_300e_in1k', source=timm_csv),
    # about TinyViM-L
    'timm:fastvit_sa24': dict(top1=82.706, tag='apple_in1k', eval_size=256, source=timm_csv),
    'timm:mambaout_tiny': dict(top1=82.742, tag='in1k', source=timm_csv),
    'timm:repvit_m2_3': dict(top1=83.524, tag='dist_300e_in1k', source=timm_csv),
    'timm:efficientformerv2_l': dict(top1=83.642, tag='snap_dist_in1k', source=timm_csv),
}

# The peers of each size: timm models within about 2 points of TinyViM's top-1.
peers_s = ['timm:repvit_m1_1', 'timm:efficientvit_b1', 'timm:efficientformer_l1',
           'timm:efficientformerv2_s1', 'timm:fastvit_t12', 'timm:mambaout_femto',
           'timm:mobileone_s1']
peers_b = ['timm:repvit_m1_5', 'timm:efficientformerv2_s2', 'timm:efficientvit_b2',
           'timm:fastvit_sa12']
peers_l = ['timm:repvit_m2_3', 'timm:efficientformerv2_l', 'timm:mambaout_tiny',
           'timm:fastvit_sa24']

# The inference treatment of the throughput and latency tables, the same for every
# model: fp16 autocast, channels-last, folded (TinyViM: its rep layers; timm:
# reparameterize_model); columns eager and torch.compile (default mode: it compiles
# much faster than max-autotune).
inference = dict(dtype='fp16', channels_last=True, reparameterize=True)
eager_compiled = [dict(name='eager'), dict(name='compiled', compile=True)]
