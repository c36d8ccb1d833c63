# Runner-level ImageNet training with the RegNetY-16GF teacher, TinyViM-S and -B: the
# released recipe's equivalent, the configs' default (the teacher in fp16, replayed from
# CUDA graphs) and the default with the teacher eager in fp16 channels-last. About 12 min on one
# H200 (four compilations of the student); S alone, the released and default columns,
# about 5 min:
#   python tools/benchmark.py --preset train_teacher --json work_dirs/benchmark/train_teacher.json
_base_ = ['./_base_/sections.py']
sections = [_base_.train_teacher]
