#!/usr/bin/env bash
# `make paper` / `make paper-quick`: rerun the study on both tasks, overlay the representation
# spectra, and rebuild the tables, claim verdicts and charts in docs/results.md from the run dirs.
# Prints the wall time of each part.
#   full:  conf/experiment/paper_*.yaml as they are (3 seeds, 300 steps, the rates of
#          conf/rates/tuned.yaml, which `make tune` chose on the val split), plus the equal-budget
#          rows: LoRA and Adapter at 600 steps (PT-PEFT's 300 + 300), labelled lora_600 /
#          adapter_600, with their 300-step tuned rates. Block `paper-tuned`, figures docs/figures/tuned-*.
#          (The block `paper-full` holds the earlier, untuned `make paper`; it is kept as it was.)
#   quick: seed 0, 150 steps, rates=none (the method yamls' hand-set values: rates tuned for 300
#          steps are not tuned at 150), no equal-budget rows. Block `paper-quick`, figures quick-*.
# Environment (a smoke run of the script itself, tests/scripts/test_paper_script.py): PAPER_STEPS
# (steps per stage instead of the preset's; the equal-budget rows get twice as many), PAPER_ARGS
# (more train overrides for every sweep), PAPER_TASKS, PAPER_ROOT, PAPER_DOC, PAPER_FIGURES.
set -euo pipefail
mode=${1:-full}
ptpeft=${PTPEFT:-.venv/bin/ptpeft}
doc=${PAPER_DOC:-docs/results.md}
figures_dir=${PAPER_FIGURES:-docs/figures}
read -r -a more <<< "${PAPER_ARGS:-}"
case "$mode" in
  full) extra=(); block=paper-tuned; figures=tuned
        grep -q "^source: make tune" conf/rates/tuned.yaml \
          || echo "paper-full: warning: conf/rates/tuned.yaml was not written by make tune (hand-set rates)" ;;
  quick) extra=(trainer.seed=0 rates=none); block=paper-quick; figures=quick; PAPER_STEPS=${PAPER_STEPS:-150} ;;
  *) echo "usage: scripts/paper.sh full|quick" >&2; exit 2 ;;
esac
equal=600  # PT-PEFT's 300 + 300 (the labels say 600)
if [ -n "${PAPER_STEPS:-}" ]; then extra+=("trainer.max_steps=$PAPER_STEPS"); equal=$((2 * PAPER_STEPS)); fi
root=${PAPER_ROOT:-outputs/paper-$mode}
rm -rf "$root"
start=$SECONDS
for task in ${PAPER_TASKS:-captioning vqa}; do
  "$ptpeft" train -m "experiment=paper_$task" "${extra[@]}" "${more[@]}" logger=none "output_root=$root" \
    "hydra.sweep.dir=$root/$task"
  "$ptpeft" analyze "sweep_dir=$root/$task"
  if [ "$mode" = full ]; then  # the same optimizer steps as PT-PEFT's two stages
    "$ptpeft" train -m "experiment=paper_$task" method=lora,adapter "trainer.max_steps=$equal" \
      'method.label=${.name}_600' "${more[@]}" logger=none "output_root=$root" "hydra.sweep.dir=$root/$task-600"
  fi
  echo "paper-$mode: $task done after $((SECONDS - start)) s"
done
"$ptpeft" report "runs=$root" "out=$root/report" "update_doc=$doc" "doc_block=$block"
mkdir -p "$figures_dir"  # the charts and spectra docs/results.md shows
for task in ${PAPER_TASKS:-captioning vqa}; do
  cp "$root/report/$task.png" "$figures_dir/$figures-$task.png"
  cp "$root/$task/spectra.png" "$figures_dir/$figures-$task-spectra.png"
done
cp "$root/report/retention_rank.png" "$figures_dir/$figures-retention-rank.png"
echo "paper-$mode: wall time $((SECONDS - start)) s"
