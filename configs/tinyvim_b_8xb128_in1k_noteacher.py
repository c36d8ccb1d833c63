# TinyViM-B on ImageNet-1k, the paper's recipe without distillation: both heads
# learn from the (mixed, smoothed) labels; inference still averages them, so the
# checkpoints keep the released layout.
_base_ = './tinyvim_b_8xb128_in1k.py'

model = dict(teacher=None, teacher_checkpoint=None)
