#!/usr/bin/env bash
# Does Semantic FPN + TinyViM learn? Generates the toy ADE20K-layout set, trains
# configs/fpn_tinyvim_${ARCH}_toy_ade.py from scratch (no pretrained weights),
# evaluates on the 50 validation images and prints the mIoU.
#
# GPU (1 GPU, about 3 min, target mIoU >= 0.70), from the repository root:
#   bash tools/experiments/toy_seg.sh
# CPU trend run (TinyViM-S, 128x128 crops, 300 iterations, ~10 min on 2 idle cores):
#   TOY_SEG_CPU=1 bash tools/experiments/toy_seg.sh
# Overrides (env): ARCH (s|b|l), ITERS, BATCH, CROP (train crop side; the
# resize scales follow it), LR, WORKERS, SEED, DATA_DIR, WORK_DIR, MIN_MIOU
# (exit status 1 below it).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${TOY_SEG_CPU:-0}" = 1 ]; then
  : "${ARCH:=s}" "${ITERS:=300}" "${BATCH:=4}" "${CROP:=128}" "${WORKERS:=1}" "${MIN_MIOU:=0}"
else
  : "${ARCH:=b}" "${ITERS:=1000}" "${BATCH:=16}" "${CROP:=256}" "${WORKERS:=8}" "${MIN_MIOU:=0.70}"
fi
: "${SEED:=0}" "${DATA_DIR:=data/toy}" "${WORK_DIR:=work_dirs/toy_seg_${ARCH}}"
export ARCH ITERS BATCH CROP WORKERS MIN_MIOU SEED DATA_DIR WORK_DIR
export LR="${LR:-}"

start=$(date +%s)
python tools/dataset_converters/make_toy_data.py --out "$DATA_DIR" --tasks ade --size default

python - <<'EOF'
import os
import sys
import time

from mmengine.config import Config
from mmengine.runner import Runner

env = os.environ
arch, iters, crop = env['ARCH'], int(env['ITERS']), int(env['CROP'])
cfg = Config.fromfile(f'configs/fpn_tinyvim_{arch}_toy_ade.py')
cfg.work_dir = env['WORK_DIR']
cfg.randomness = dict(seed=int(env['SEED']))

# Crop side and resize scales (short side = crop, as in the toy config).
crop_size, scale = (crop, crop), (4 * crop, crop)
cfg.model.data_preprocessor.size = crop_size
pipelines = (cfg.train_dataloader.dataset.pipeline, cfg.val_dataloader.dataset.pipeline)
for step in (s for p in pipelines for s in p):
    if step['type'] in ('RandomResize', 'Resize'):
        step['scale'] = scale
    elif step['type'] == 'RandomCrop':
        step['crop_size'] = crop_size

# Schedule: the config's linear warm-up (at most a tenth of the run), then
# poly decay to the new end.
warmup, poly = cfg.param_scheduler
warmup['end'] = poly['begin'] = min(warmup['end'], max(iters // 10, 1))
poly['end'] = iters
cfg.train_cfg.update(max_iters=iters, val_interval=iters)
cfg.default_hooks.checkpoint.interval = iters
cfg.default_hooks.logger.interval = max(iters // 20, 1)
if env['LR']:
    cfg.optim_wrapper.optimizer.lr = float(env['LR'])

workers = int(env['WORKERS'])
cfg.train_dataloader.update(batch_size=int(env['BATCH']), num_workers=workers,
                            persistent_workers=workers > 0)
cfg.val_dataloader.update(num_workers=min(workers, 2), persistent_workers=False)
cfg.test_dataloader = cfg.val_dataloader
for loader in (cfg.train_dataloader, cfg.val_dataloader):
    loader.dataset.data_root = os.path.join(env['DATA_DIR'], 'ade')

runner = Runner.from_cfg(cfg)
tic = time.perf_counter()
runner.train()  # validates once, at the end
miou = runner.message_hub.get_scalar('val/mIoU').current() / 100
target = float(env['MIN_MIOU'])
print(f'TinyViM-{arch.upper()} Semantic FPN, toy ADE: {iters} iters x batch '
      f'{env["BATCH"]} at {crop}x{crop}, train+val {time.perf_counter() - tic:.0f} s: '
      f'mIoU = {miou:.4f} (target {target:.2f}: {"met" if miou >= target else "NOT met"})')
sys.exit(0 if miou >= target else 1)
EOF
echo "toy_seg.sh total: $(( $(date +%s) - start )) s"
