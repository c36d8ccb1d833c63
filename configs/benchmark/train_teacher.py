# Runner-level ImageNet training with the RegNetY-16GF teacher, TinyViM-S and -B: the
# released recipe's equivalent, the configs' default (teacher in fp16, channels-last,
# eager) and the default with the teacher compiled into CUDA graphs
# (model.teacher_fast.compile=dict(mode='reduce-overhead')). About 12 min on one H200
# (four compilations):
#   python tools/benchmark.py --preset train_teacher --json work_dirs/benchmark/train_teacher.json
_base_ = ['./_base_/sections.py']
sections = [_base_.train_teacher]
