# PyTorch on the CPU: latency at batch 1 (median and p90 of single calls), 224x224,
# float32, folded, TinyViM-S and -B in the inference form and the peers of the ONNX
# Runtime table (docs/benchmarks.md), with NCHW input (the models' weights as built:
# TinyViM's inference form keeps its backbone channels-last) and with model and input
# channels-last. "NCHW backbone": optimize_for_inference(channels_last=False), the
# inference form before its backbone went channels-last. No GPU needed:
#   python tools/benchmark.py --preset latency_cpu --device cpu
_base_ = ['./_base_/sections.py']
cpu = dict(kind='latency', batches=[1], img_size=224,
           treatment=dict(dtype='fp32', channels_last=False, reparameterize=True),
           columns=[dict(name='NCHW input'), dict(name='channels-last', channels_last=True)],
           timing=dict(warmup=5, warmup_time=0.5, repeats=20, min_time=2.0))
nchw_backbone = dict(channels_last=False)
latency_cpu_s = dict(
    cpu, title='PyTorch CPU latency, TinyViM-S and its peers',
    models=['tinyvim-s:fast',
            dict(name='tinyvim-s:fast', label='TinyViM-S fast, NCHW backbone',
                 optimize=nchw_backbone),
            'timm:repvit_m1_1', 'timm:efficientvit_b1', 'timm:efficientformer_l1',
            'timm:mobileone_s1'],
    reference='TinyViM-S fast')
latency_cpu_b = dict(
    cpu, title='PyTorch CPU latency, TinyViM-B and its peers',
    models=['tinyvim-b:fast',
            dict(name='tinyvim-b:fast', label='TinyViM-B fast, NCHW backbone',
                 optimize=nchw_backbone),
            'timm:repvit_m1_5', 'timm:fastvit_sa12', 'timm:efficientformerv2_s2'],
    reference='TinyViM-B fast')
sections = [latency_cpu_s, latency_cpu_b]
