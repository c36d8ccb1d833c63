# Runner-level ImageNet training with the RegNetY-16GF teacher, TinyViM-S and -B: the
# released recipe's equivalent, the configs' default (the teacher in fp16, compiled,
# replayed from CUDA graphs) and the default with the teacher not compiled. About 17 min on
# one H200 (four compilations of the student, two of the teacher); the released and
# default columns alone took 6.8 min for S and 5.5 min for B (2026-12-04):
#   python tools/benchmark.py --preset train_teacher --json work_dirs/benchmark/train_teacher.json
_base_ = ['./_base_/sections.py']
sections = [_base_.train_teacher]
