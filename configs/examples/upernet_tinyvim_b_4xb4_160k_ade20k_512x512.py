# UperNet with a TinyViM-B backbone on ADE20K, 512x512 crops: mmseg's R50 UperNet recipe
# with the backbone swapped. The decode head takes all four stages, the auxiliary FCN
# head stage 3 (in_index=2). AdamW 6e-5 / wd 0.01 with a poly schedule, as mmseg's
# transformer-backbone UperNets use.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['tinyvim_mm'], allow_failed_imports=False)

model = dict(
    # mmseg's segmentor passes `pretrained` to the backbone; the backbone's init_cfg says it
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='TinyViM',
        arch='b',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/tinyvim-b_in1k.pth')),
    decode_head=dict(in_channels=[48, 96, 192, 384]),  # TinyViM-B's stage widths
    auxiliary_head=dict(in_channels=192))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))

# Fast training on GPUs (tinyvim_mm.engine.fast_training): all off, not measured for this
# model. For Semantic FPN (fpn_tinyvim_s_ade20k_40k.py, 4 images per GPU, H200) AMP, fused
# AdamW and channels-last made the loop slower and the backbone in CUDA graphs 1.52x
# faster: try `--cfg-options fast_training.compile=reduce-overhead` (fixed 512x512 crops).
runner_type = 'FastTrainingRunner'
fast_training = dict(amp=False, channels_last=False, fused_optimizer=False, compile=False)
