# The tables the benchmark presets are made of (tinyvim_mm.benchmark.presets documents
# the keys). Every table measures all its models with one treatment per column, in
# one run; ratios are over its `reference` row.
_base_ = ['./zoo.py']

# ---------------------------------------------------------------- inference, 224x224
# TinyViM folded (its rep layers, as timm's reparameterize_model folds the peers) and
# in its fast inference form (optimize_for_inference: Triton scan, fused FFN blocks,
# 7x7 axial fold), against the timm models of about its top-1.
throughput = dict(kind='throughput', batch=1024, img_size=224,
                  treatment=_base_.inference, columns=_base_.eager_compiled)
throughput_s = dict(throughput, title='TinyViM-S and timm models of 75.8-80.8 % top-1',
                    models=['tinyvim-s', 'tinyvim-s:fast'] + _base_.peers_s,
                    reference='tinyvim-s')
throughput_b = dict(throughput, title='TinyViM-B and timm models of 80.8-82.4 % top-1',
                    models=['tinyvim-b', 'tinyvim-b:fast'] + _base_.peers_b,
                    reference='tinyvim-b')
throughput_l = dict(throughput, title='TinyViM-L and timm models of 82.7-83.6 % top-1',
                    models=['tinyvim-l', 'tinyvim-l:fast'] + _base_.peers_l,
                    reference='tinyvim-l')

# Latency: every call timed alone; eager, and eager replayed from a CUDA graph (no
# launch overhead: what matters at batch 1).
latency = dict(kind='latency', batches=[1, 8, 32], img_size=224, treatment=_base_.inference,
               columns=[dict(name='eager'), dict(name='CUDA graph', cuda_graphs=True)],
               timing=dict(warmup=5, warmup_time=0.5, repeats=20, min_time=0.5))
latency_s = dict(latency, title='Latency, TinyViM-S and its peers',
                 models=['tinyvim-s', 'tinyvim-s:fast'] + _base_.peers_s, reference='tinyvim-s')
latency_b = dict(latency, title='Latency, TinyViM-B and its peers',
                 models=['tinyvim-b', 'tinyvim-b:fast'] + _base_.peers_b, reference='tinyvim-b')
latency_l = dict(latency, title='Latency, TinyViM-L and its peers',
                 models=['tinyvim-l', 'tinyvim-l:fast'] + _base_.peers_l, reference='tinyvim-l')
# Batch 1 compiled (torch.compile fuses the elementwise kernels) and replayed from CUDA
# graphs (mode='reduce-overhead'): a batch-1 graph is the sum of many tiny kernels, so
# fewer kernels is what could shorten it.
latency_s_compiled = dict(latency, title='Latency at batch 1, compiled, TinyViM-S and its peers',
                          batches=[1], models=['tinyvim-s:fast'] + _base_.peers_s,
                          reference='tinyvim-s:fast',
                          columns=[dict(name='compiled, CUDA graph', compile=True,
                                        cuda_graphs=True)])

# ---------------------------------------------------------------- dense prediction
# Float32 (as the paper's detection / segmentation throughput), NCHW (mmcv's RoI ops
# take contiguous features), random weights; TinyViM-B folded, and with the Triton
# scan (the FFN kernels are half-precision fast paths, left out in float32).
mask_rcnn_b = 'configs/mask_rcnn_tinyvim_b.py'
mask_rcnn_r50 = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
fpn_b = 'configs/fpn_tinyvim_b_ade20k_40k.py'
fpn_r50 = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
dense_treatment = dict(dtype='fp32', channels_last=False, reparameterize=True)
dense_fast = dict(fuse_blocks=False, scan_backend='triton')
# "fast (--deploy)": what `tools/test.py --deploy` runs (InferenceFormHook: the folded
# form with the Triton scan, the backbone replayed from CUDA graphs); "+ neck and head
# graphs": also the neck and the RPN / decode head (fixed-shape parts of the model);
# ResNet-50 gets the same graphs in its own rows.
det_graphs = ['backbone', 'neck', 'rpn_head']
seg_graphs = ['backbone', 'neck', 'decode_head']
dense_det = dict(
    kind='dense', title='Mask R-CNN end to end (test_step, 100 detections per image)',
    batch=2, img_size=(800, 1333), treatment=dense_treatment,
    models=[dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B'),
            dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B fast (--deploy)',
                 optimize=dense_fast, cuda_graphs=['backbone']),
            dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B fast + neck and head graphs',
                 optimize=dense_fast, cuda_graphs=det_graphs),
            dict(name=mask_rcnn_r50, label='Mask R-CNN, ResNet-50 (mmdet)'),
            dict(name=mask_rcnn_r50, label='Mask R-CNN, ResNet-50, backbone in CUDA graphs',
                 cuda_graphs=['backbone']),
            dict(name=mask_rcnn_r50, label='Mask R-CNN, ResNet-50 + neck and head graphs',
                 cuda_graphs=det_graphs)],
    reference='Mask R-CNN, ResNet-50 (mmdet)')
dense_seg = dict(
    kind='dense', title='Semantic FPN end to end (test_step)', batch=8, img_size=512,
    treatment=dense_treatment,
    models=[dict(name=fpn_b, label='Semantic FPN, TinyViM-B'),
            dict(name=fpn_b, label='Semantic FPN, TinyViM-B fast (--deploy)',
                 optimize=dense_fast, cuda_graphs=['backbone']),
            dict(name=fpn_b, label='Semantic FPN, TinyViM-B fast + neck and head graphs',
                 optimize=dense_fast, cuda_graphs=seg_graphs),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50 (mmseg)'),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50, backbone in CUDA graphs',
                 cuda_graphs=['backbone']),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50 + neck and head graphs',
                 cuda_graphs=seg_graphs)],
    reference='Semantic FPN, ResNet-50 (mmseg)')
# The same in fp16 autocast (NCHW: mmcv's RoI ops), TinyViM-B fast with its
# half-precision fast paths (fused FFN blocks, 7x7 axial fold); both backbones from CUDA
# graphs, then with the neck and head too.
dense_fp16 = dict(dtype='fp16', channels_last=False, reparameterize=True)
dense_fast_fp16 = dict(scan_backend='triton', fold_axial=True)
dense_det_fp16 = dict(
    dense_det, title='Mask R-CNN end to end, fp16 autocast', treatment=dense_fp16,
    models=[dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B fast (--deploy), fp16',
                 optimize=dense_fast_fp16, cuda_graphs=['backbone']),
            dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B fast + neck and head '
                 'graphs, fp16', optimize=dense_fast_fp16, cuda_graphs=det_graphs),
            dict(name=mask_rcnn_r50, label='Mask R-CNN, ResNet-50, backbone in CUDA graphs, '
                 'fp16', cuda_graphs=['backbone']),
            dict(name=mask_rcnn_r50, label='Mask R-CNN, ResNet-50 + neck and head graphs, '
                 'fp16', cuda_graphs=det_graphs)],
    reference='Mask R-CNN, ResNet-50, backbone in CUDA graphs, fp16')
dense_seg_fp16 = dict(
    dense_seg, title='Semantic FPN end to end, fp16 autocast', treatment=dense_fp16,
    models=[dict(name=fpn_b, label='Semantic FPN, TinyViM-B fast (--deploy), fp16',
                 optimize=dense_fast_fp16, cuda_graphs=['backbone']),
            dict(name=fpn_b, label='Semantic FPN, TinyViM-B fast + neck and head graphs, '
                 'fp16', optimize=dense_fast_fp16, cuda_graphs=seg_graphs),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50, backbone in CUDA graphs, fp16',
                 cuda_graphs=['backbone']),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50 + neck and head graphs, fp16',
                 cuda_graphs=seg_graphs)],
    reference='Semantic FPN, ResNet-50, backbone in CUDA graphs, fp16')
# Semantic FPN in fp16 with channels-last weights (the layout of TinyViM's fast blocks;
# mmseg's neck and head take it too), both backbones from CUDA graphs.
dense_seg_fp16_cl = dict(
    dense_seg, title='Semantic FPN end to end, fp16 autocast, channels-last',
    treatment=dict(dense_fp16, channels_last=True),
    models=[dict(name=fpn_b, label='Semantic FPN, TinyViM-B fast (--deploy), fp16 CL',
                 optimize=dense_fast_fp16, cuda_graphs=['backbone']),
            dict(name=fpn_r50, label='Semantic FPN, ResNet-50, backbone in CUDA graphs, '
                 'fp16 CL', cuda_graphs=['backbone'])],
    reference='Semantic FPN, ResNet-50, backbone in CUDA graphs, fp16 CL')
backbone_det = dict(
    kind='backbone', title='Backbones alone at the detection size', batch=2,
    img_size=(800, 1333), treatment=dense_treatment,
    columns=_base_.eager_compiled + [dict(name='CUDA graph', cuda_graphs=True)],
    models=[dict(name=mask_rcnn_b, label='TinyViM-B'),
            dict(name=mask_rcnn_b, label='TinyViM-B fast', optimize=dense_fast),
            dict(name=mask_rcnn_r50, label='ResNet-50 (mmdet)')],
    reference='ResNet-50 (mmdet)')
# The same in fp16 autocast and channels-last (the fused FFN kernels on).
backbone_det_fp16 = dict(
    backbone_det, title='Backbones alone at the detection size, fp16, channels-last',
    treatment=dict(dtype='fp16', channels_last=True, reparameterize=True),
    columns=[dict(name='eager'), dict(name='CUDA graph', cuda_graphs=True)],
    models=[dict(name=mask_rcnn_b, label='TinyViM-B fast', optimize=dict(fold_axial=True)),
            dict(name=mask_rcnn_r50, label='ResNet-50 (mmdet)')])

# ---------------------------------------------------------------- training, runner level
# The configs' real training loops (MMEngine Runner: data preprocessor with Mixup /
# CutMix, losses, AGC, EMA, hooks) on in-memory samples, at the configs' batch per GPU.
# "released": the released recipe's equivalent, AMP with NCHW and plain AdamW, the losses
# read every iteration (and the distillation teacher in fp16, NCHW, as it ran under AMP
# there);
# "default": the config as it is (ImageNet's fast_training: AMP, channels-last, fused
# AdamW, the backbone compiled into CUDA graphs, the losses logged without waiting, the
# data preprocessor on a CUDA stream of its own; the teacher's teacher_fast: fp16,
# compiled, replayed from CUDA graphs, beside the student's forward); "preprocess on the
# main stream": the default without fast_training.preprocess_stream; "losses read every
# iteration": the default with MMEngine's RuntimeInfoHook (and so without the preprocess
# stream, which overlaps only when the host runs ahead).
released = {'fast_training.channels_last': False, 'fast_training.fused_optimizer': False,
            'fast_training.compile': False, 'fast_training.async_logging': False}
# Segmentation trains its backbone from CUDA graphs by default, Mask R-CNN in fp32 with
# host-side settings only (polygon masks, the two overlaps below, one host thread);
# "fast form": their fast_training settings on (channels-last only for segmentation:
# mmcv's RoIAlign needs NCHW).
fast_det = {'fast_training.amp': 'float16', 'fast_training.fused_optimizer': True}
fast_seg = dict(fast_det, **{'fast_training.channels_last': True})
# The ImageNet configs' two host-side overlaps (losses logged without waiting, the data
# preprocessor on a stream of its own), on in the dense configs too.
overlaps = {'fast_training.async_logging': True, 'fast_training.preprocess_stream': True}
no_overlaps = {k: False for k in overlaps}
# Mask R-CNN's masks as full-size bitmaps through the data workers (mmdet's plain 1x
# recipe, LoadAnnotations(poly2mask=True)) instead of the configs' polygons.
bitmaps = {'train_dataloader.dataset.pipeline.1.poly2mask': True}
train_cls_variants = [
    dict(name='released', cfg_options=dict(released, **{
        'model.teacher_fast': dict(dtype='float16', channels_last=False, compile=False)})),
    dict(name='eager', cfg_options={'fast_training.compile': False}),
    dict(name='default'),
    dict(name='preprocess on the main stream',
         cfg_options={'fast_training.preprocess_stream': False}),
    dict(name='losses read every iteration', cfg_options={
        'fast_training.async_logging': False, 'fast_training.preprocess_stream': False})]
train_cls = dict(
    kind='runner_train', title='ImageNet training, runner level (batch 128 per GPU, 224x224)',
    iters=20, warmup=5, columns=train_cls_variants,
    models=[dict(name='configs/tinyvim_s_8xb128_in1k.py', label='TinyViM-S, RegNetY-16GF teacher'),
            dict(name='configs/tinyvim_s_8xb128_in1k_noteacher.py', label='TinyViM-S, no teacher'),
            dict(name='configs/tinyvim_b_8xb128_in1k.py', label='TinyViM-B, RegNetY-16GF teacher'),
            dict(name='configs/tinyvim_b_8xb128_in1k_noteacher.py', label='TinyViM-B, no teacher')])
# The distillation teacher (RegNetY-16GF, ~17x the student's forward): released, the
# default (the teacher in fp16, compiled, replayed from CUDA graphs, on a stream of its
# own beside the student's forward), the default with the preprocessor on the main
# stream, with the losses read every iteration, with the teacher after the student's
# forward on the same stream (teacher_fast.concurrent=False) and with the teacher not
# compiled.
train_teacher = dict(
    train_cls, title='ImageNet training with the teacher, runner level (batch 128 per GPU, '
    '224x224)',
    columns=[*train_cls_variants[0:1], *train_cls_variants[2:],
             dict(name='teacher after the student', cfg_options={'model.teacher_fast': dict(
                 dtype='float16', channels_last=False, compile=True, cuda_graphs=True,
                 concurrent=False)}),
             dict(name='teacher not compiled', cfg_options={'model.teacher_fast': dict(
                 dtype='float16', channels_last=False, compile=False, cuda_graphs=True,
                 concurrent=True)})],
    models=[train_cls['models'][0], train_cls['models'][2]])
train_det = dict(
    kind='runner_train', title='Detection training, runner level (batch 4 per GPU, 800x1333)',
    iters=30, warmup=5,
    columns=[dict(name='plain', cfg_options=dict(
                 bitmaps, **no_overlaps, **{'fast_training.host_threads': False})),
             dict(name='default'),
             dict(name='bitmap masks', cfg_options=bitmaps),
             dict(name='bitmap masks, 8 data workers',
                  cfg_options=dict(bitmaps, **{'train_dataloader.num_workers': 8})),
             dict(name='without overlaps', cfg_options=no_overlaps),
             dict(name="torch's host threads",
                  cfg_options={'fast_training.host_threads': False}),
             dict(name='+ AMP, fused AdamW', cfg_options=fast_det)],
    models=[dict(name=mask_rcnn_b, label='Mask R-CNN, TinyViM-B')])
# Segmentation crops are fixed at 512x512: the default trains the backbone from CUDA
# graphs (torch.compile mode='reduce-overhead', fp32), which remove the host-bound
# launches of the eager loop at 4 images per GPU, with the two overlaps; "plain" is the
# eager fp32 form with the losses read every iteration.
train_seg = dict(
    train_det, title='Segmentation training, runner level (batch 4 per GPU, 512x512)', iters=20,
    columns=[dict(name='plain', cfg_options=dict(no_overlaps, **{'fast_training.compile': False})),
             dict(name='default'),
             dict(name='without overlaps', cfg_options=no_overlaps),
             dict(name='+ AMP, channels-last, fused AdamW', cfg_options=fast_seg)],
    models=[dict(name=fpn_b, label='Semantic FPN, TinyViM-B')])
