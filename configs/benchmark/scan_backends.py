# The selective-scan backends inside whole models, training (forward, backward and the
# optimizer step, the training form): 'triton' (the fused cross scan with its backward),
# 'cuda' (mamba-ssm's extension, where installed) and 'torch' (chunked), one row each.
# 1. TinyViM-B at 2x3x512x512, float32 (the segmentation training size: small batch,
#    longer scans);
# 2. TinyViM-S at batch 256, 224x224, fp16 AMP, channels-last, fused AdamW (the
#    classification training step of the configs' fast training).
# About 2 min on one H200:
#   python tools/benchmark.py --preset scan_backends --json work_dirs/benchmark/scan_backends.json
_base_ = ['./_base_/sections.py']

backends = ['triton', 'cuda', 'torch']


def _rows(config, arch):
    return [dict(name=config, label=f'TinyViM-{arch}, {b}',
                 cfg_options={'model.backbone.scan_backend': b}) for b in backends]


timing = dict(warmup=3, repeats=5, min_time=1.0)
sections = [
    dict(kind='train_step', title='TinyViM-B training step by scan backend, 2x3x512x512, fp32',
         batch=2, img_size=512, treatment=dict(dtype='fp32', reparameterize=False),
         models=_rows('configs/tinyvim_b_8xb128_in1k_noteacher.py', 'B'),
         reference='TinyViM-B, cuda', timing=timing),
    dict(kind='train_step', title='TinyViM-S training step by scan backend, batch 256, 224x224, '
         'fp16 AMP, channels-last, fused AdamW', batch=256, img_size=224,
         treatment=dict(dtype='fp16', channels_last=True, reparameterize=False,
                        fused_optimizer=True),
         models=_rows('configs/tinyvim_s_8xb128_in1k_noteacher.py', 'S'),
         reference='TinyViM-S, cuda', timing=timing),
]
