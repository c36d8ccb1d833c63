# Helpers of the toy experiment scripts (sourced): command-line options for the toy
# configs and the metric check on what tools/test.py wrote.

# loader_options WORKERS: the three dataloaders' workers (persistent only with workers)
loader_options() {
  local persistent=False split
  [ "$1" -gt 0 ] && persistent=True
  for split in train val test; do
    echo "${split}_dataloader.num_workers=$1"
    echo "${split}_dataloader.persistent_workers=$persistent"
  done
}

# data_root_options ROOT: the three datasets' data_root
data_root_options() {
  local split
  for split in train val test; do echo "${split}_dataloader.dataset.data_root=$1"; done
}

# coco_options ROOT: data_root_options ROOT and the COCO evaluators' annotation file
coco_options() {
  data_root_options "$1"
  echo "val_evaluator.ann_file=$1annotations/instances_val2017.json"
  echo "test_evaluator.ann_file=$1annotations/instances_val2017.json"
}

# metric KEY TEST_WORK_DIR: KEY of the newest metrics json tools/test.py wrote there
metric() {
  local json
  json=$(ls -t "$2"/*/*.json 2>/dev/null | head -n 1)
  if [ -z "$json" ]; then
    echo "no metrics json under $2" >&2
    return 1
  fi
  grep -o "\"$1\": *[-0-9.eE+]*" "$json" | head -n 1 | sed 's/.*: *//'
}

# check NAME VALUE MIN: prints the result; exit status 1 when VALUE < MIN (or missing)
check() {
  if [ -n "$2" ] && awk -v v="$2" -v m="$3" 'BEGIN { exit !(v >= m) }'; then
    echo "$1 = $2 (target >= $3: met)"
  else
    echo "$1 = ${2:-missing} (target >= $3: NOT met)"
    return 1
  fi
}
