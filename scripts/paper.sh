#!/usr/bin/env bash
# `make paper` (3 seeds, 300 steps: conf/experiment/paper_*.yaml as they are) / `make paper-quick` (seed 0, 150 steps):
# rerun the study on both tasks, overlay the representation spectra, and rebuild the tables and
# charts in docs/results.md from the run dirs. Prints the wall time of each part.
set -euo pipefail
mode=${1:-full}
ptpeft=${PTPEFT:-.venv/bin/ptpeft}
extra=(); [ "$mode" = quick ] && extra=(trainer.seed=0 trainer.max_steps=150)
root=outputs/paper-$mode
rm -rf "$root"
start=$SECONDS
for task in captioning vqa; do
  "$ptpeft" train -m "experiment=paper_$task" "${extra[@]}" logger=none "output_root=$root" \
    "hydra.sweep.dir=$root/$task"
  "$ptpeft" analyze "sweep_dir=$root/$task"
  echo "paper-$mode: $task done after $((SECONDS - start)) s"
done
"$ptpeft" report "runs=$root" "out=$root/report" update_doc=docs/results.md "doc_block=paper-$mode"
mkdir -p docs/figures  # the charts and spectra docs/results.md shows
for task in captioning vqa; do
  cp "$root/report/$task.png" "docs/figures/$mode-$task.png"
  cp "$root/$task/spectra.png" "docs/figures/$mode-$task-spectra.png"
done
echo "paper-$mode: wall time $((SECONDS - start)) s"
