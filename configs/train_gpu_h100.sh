#!/bin/bash
# The GPU training call that produced models/lvp-vnet 1.0.0 (one H100, bf16 autocast): two working-spacing
# variants side by side, 380 s each. Needs the cache .gpu/lvp_cache.npz (built by `lvp train` on first use)
# and, where MONAI is missing, its wheel in .whl/. Writes to $OUT (default runs/gpu).
OUT=$(realpath -m "${OUT:-runs/gpu}"); mkdir -p "$OUT"  # absolute: config paths resolve from configs/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || true
export PYTHONPATH=/tmp/site:$PWD/LumbarVNetPro PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import monai, torch; print('monai', monai.__version__, 'torch', torch.__version__, torch.cuda.is_available())" || true
B=${BUDGET:-380}
python3 -m lvp train --config configs/train_lvp_vnet.yaml --set time_budget_s=$B workers=8 out_dir=$OUT/a > $OUT/a.log 2>&1 &
python3 -m lvp train --config configs/train_lvp_vnet.yaml --set time_budget_s=$B workers=7 out_dir=$OUT/b 'spacing=[1.0,1.0,1.0]' 'patch=[32,256,224]' > $OUT/b.log 2>&1 &
wait
rm -f $OUT/a/last.pt $OUT/b/last.pt  # optimizer state: too big for the device file limit
for f in $OUT/a/train_log.jsonl $OUT/b/train_log.jsonl; do tail -n 3 "$f"; done
