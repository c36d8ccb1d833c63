# Runner-level ImageNet training with the RegNetY-16GF teacher, TinyViM-S and -B: the
# released recipe's equivalent, the configs' default (the teacher in fp16, compiled,
# replayed from CUDA graphs, beside the student's forward; the preprocessor on a stream of
# its own), and the default less one setting each. The released and default columns of
# both models took 5.4 min on one H200 with a warm compile cache (2026-12-05); every
# column, about 15 min:
#   python tools/benchmark.py --preset train_teacher --json work_dirs/benchmark/train_teacher.json
_base_ = ['./_base_/sections.py']
sections = [_base_.train_teacher]
