#!/usr/bin/env bash
# `make paper` (3 seeds) / `make paper-quick` (1 seed, shorter): rerun the study, rebuild the tables
# in docs/results.md from the run dirs, and overlay the representation spectra.
set -euo pipefail
mode=${1:-full}
ptpeft=${PTPEFT:-.venv/bin/ptpeft}
if [ "$mode" = quick ]; then seeds=0; steps=150; else seeds=0,1,2; steps=300; fi
root=outputs/paper-$mode
rm -rf "$root"
for task in captioning vqa; do
  "$ptpeft" train -m "experiment=paper_$task" method=full,lora,adapter,prefix,pt_peft,pt_adapter \
    "trainer.seed=$seeds" "trainer.max_steps=$steps" logger=none "output_root=$root" \
    "hydra.sweep.dir=$root/$task"
  "$ptpeft" analyze "sweep_dir=$root/$task"
done
"$ptpeft" report "runs=$root" "out=$root/report" update_doc=docs/results.md
