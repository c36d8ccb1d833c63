# Runner-level ImageNet training of TinyViM-S without teacher (the README's training
# number): the released recipe's equivalent, the fast form eager, the config's
# default, and the default less one setting each. 4-7 min on one H200 (the
# compilation takes 1.5-4 min):
#   python tools/benchmark.py --preset train_s --json work_dirs/benchmark/train_s.json
_base_ = ['./_base_/sections.py']
sections = [dict(_base_.train_cls, models=[_base_.train_cls.models[1]])]
