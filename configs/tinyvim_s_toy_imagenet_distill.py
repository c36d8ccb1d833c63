# The toy classification recipe (tinyvim_s_toy_imagenet.py: same model, pipelines and
# schedule) with DeiT hard distillation from a toy teacher, timm's resnet18 trained
# first on the same data by resnet18_toy_imagenet_teacher.py:
#   python tools/train.py configs/resnet18_toy_imagenet_teacher.py
#   python tools/train.py configs/tinyvim_s_toy_imagenet_distill.py --cfg-options \
#       model.teacher_checkpoint="$(cat work_dirs/resnet18_toy_imagenet_teacher/last_checkpoint)"
# tools/experiments/toy_cls.sh runs both and tests the student. The teacher is not
# part of the student's weights: its checkpoints fit tinyvim_s_toy_imagenet.py too.
_base_ = './tinyvim_s_toy_imagenet.py'

model = dict(
    teacher=dict(_delete_=True, type='TimmClassifier', model_name='resnet18',
                 pretrained=False, num_classes=10),
    teacher_checkpoint='work_dirs/resnet18_toy_imagenet_teacher/epoch_40.pth')
