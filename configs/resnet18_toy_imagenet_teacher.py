# The distillation teacher of tinyvim_s_toy_imagenet_distill.py: timm's resnet18
# trained from scratch on the same toy data with the same pipelines and schedule
# (64x64, 40 epochs), AdamW + cosine, no EMA.
#   python tools/train.py configs/resnet18_toy_imagenet_teacher.py
# writes work_dirs/resnet18_toy_imagenet_teacher/epoch_40.pth, the student's default
# model.teacher_checkpoint (DistillImageClassifier loads this mmpretrain checkpoint).
_base_ = './tinyvim_s_toy_imagenet.py'

model = dict(_delete_=True, type='TimmClassifier', model_name='resnet18', pretrained=False,
             num_classes=10)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
custom_hooks = []
