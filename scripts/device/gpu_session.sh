#!/usr/bin/env bash
# The one command of a GPU session (issue 16): real-size `make bench-gpu` rows and the tiny 7-method
# sweep, written under $OUT as they come, each step under its own time limit.
#
# Here, before the session (from the project root; ~2 MB from PyPI, once):
#   bash /work/shared/device/fetch-wheels.sh      # hydra, omegaconf, antlr4, datasets, evaluate, ... -> .whl/
#   bash scripts/device/gpu_session.sh prepare    # + pycocoevalcap's Python files (no jars) -> .whl/pysrc
# On the device machine (`run` with carry [".whl"], timeout_s ~560):
#   bash scripts/device/gpu_session.sh            # = main
# Parts (default main): main = setup llava7b sweep others (limits 60+250+170+60 s: 9 min at most); rest = the other methods and checkpoints;
# levers = each speed lever off/on on LLaVA-7B LoRA; or any of setup, llava7b, sweep, others by name.
# Results in $OUT: gpu.json (bench rows, rewritten after every method), tiny_sweep.json (the sweep's runs),
# benchmarks_gpu.md (the docs block; here: python scripts/bench_gpu.py --report gpu.json), session.log.
# A step past its limit gets SIGABRT (PYTHONFAULTHANDLER prints where it was; exit 124) and the next step starts.
# TINY=1 rehearses the same steps at toy size on the CPU (a slow test does), with limits x LIMIT_SCALE (default 20).
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-outputs/session}
TINY=${TINY:-0}
WORK=${WORK:-/tmp/ptpeft-session}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="/tmp/site:$PWD/.whl/pysrc:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1 TQDM_DISABLE=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PTPEFT_DATA="$WORK/data"
log() { echo "[session $(date +%H:%M:%S)] $*" | tee -a "$OUT/session.log"; }

if [ "$TINY" = 1 ]; then
  SCALE=${LIMIT_SCALE:-20}; BENCH=(--tiny); SWEEP=(hardware=cpu trainer.max_steps=2 trainer.batch_size=4 trainer.eval_batch_size=8
    task.dataset.n_train=16 task.dataset.n_val=4 task.dataset.n_test=8 analysis.max_rows=64)
else
  SCALE=${LIMIT_SCALE:-1}; BENCH=(); SWEEP=(hardware=gpu)
fi

step() {  # step NAME SECONDS COMMAND...: run under a limit, log how it ended, never stop the session
  local name=$1 limit=$(($2 * SCALE)); shift 2
  local start=$SECONDS
  log "$name: start (limit ${limit}s)"
  timeout -s ABRT "$limit" "$@" >>"$OUT/session.log" 2>&1
  local rc=$?
  log "$name: exit $rc after $((SECONDS - start))s$([ $rc = 124 ] && echo ' (time limit: see the traceback above)')"
  rm -rf "$WORK/bench"  # a step cut short leaves its checkpoint (14 GB for a 7B) behind
}

bench() {  # bench NAME SECONDS ARGS...: scripts/bench_gpu.py, rows appended to $OUT/gpu.json
  local name=$1 limit=$2; shift 2
  mkdir -p "$WORK/bench"
  step "$name" "$limit" "$PYTHON" scripts/bench_gpu.py "${BENCH[@]}" --append --out "$OUT" --work "$WORK/bench" \
    --doc "$OUT/benchmarks_gpu.md" "$@"
}

setup() {
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    mkdir -p /tmp/site
    for w in .whl/*.whl; do
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$w" >>"$OUT/session.log" 2>&1 \
        || log "not installed: $w"
    done
  fi
  timeout -s ABRT 60 "$PYTHON" - >>"$OUT/session.log" 2>&1 <<'PY'
import importlib, torch, transformers, peft
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("transformers", transformers.__version__, "peft", peft.__version__)
for name in ("hydra", "omegaconf", "datasets", "evaluate", "pycocoevalcap", "ptpeft_cli.commands.train"):
    importlib.import_module(name)
print("imports ok")
PY
  log "setup: imports $([ $? = 0 ] && echo ok || echo FAILED, see above)"
}

llava7b() { bench llava7b 250 --checkpoints llava-hf/llava-1.5-7b-hf --methods none,lora,pt_peft,full; }

sweep() {  # the embedded tiny model, every method, VQA (no Java there: captions cannot be scored)
  rm -rf "$WORK/sweep"
  step sweep 170 "$PYTHON" -m ptpeft_cli train -m method=none,full,lora,adapter,prefix,pt_peft,pt_adapter task=vqa \
    '~retention.probes.captioning' logger=none "output_root=$WORK/sweep" "${SWEEP[@]}"
  "$PYTHON" scripts/device/collect_runs.py "$WORK/sweep/sweeps" --out "$OUT/tiny_sweep.json" 2>&1 | tee -a "$OUT/session.log"
}

others() { bench others 60 --checkpoints Qwen/Qwen2-VL-2B-Instruct,Salesforce/blip2-opt-2.7b --methods lora; }

rest() {
  bench llava7b-rest 200 --checkpoints llava-hf/llava-1.5-7b-hf --methods prefix,adapter,pt_adapter
  bench qwen2b 150 --checkpoints Qwen/Qwen2-VL-2B-Instruct --methods none,pt_peft,prefix,adapter,pt_adapter,full
  bench qwen7b 200 --checkpoints Qwen/Qwen2-VL-7B-Instruct
}

levers() { bench levers 420 --checkpoints llava-hf/llava-1.5-7b-hf --methods lora --levers; }

prepare() {  # here, not on the device: pycocoevalcap's Python files only (its 100 MB of jars need Java there)
  local src
  src=$("$PYTHON" -c "import pycocoevalcap; print(list(pycocoevalcap.__path__)[0])")  # a namespace package
  rm -rf .whl/pysrc && mkdir -p .whl/pysrc
  (cd "$(dirname "$src")" && find pycocoevalcap -name '*.py' -exec install -D -m 644 {} "$OLDPWD/.whl/pysrc/{}" \;)
  ls .whl/*.whl >/dev/null 2>&1 || echo "no wheels in .whl/: run bash /work/shared/device/fetch-wheels.sh first"
  du -sh .whl
}

parts=("$@")
[ ${#parts[@]} = 0 ] && parts=(main)
for part in "${parts[@]}"; do
  case $part in
    main) setup; llava7b; sweep; others ;;
    prepare|setup|llava7b|sweep|others|rest|levers) "$part" ;;
    *) echo "unknown part $part; choose: main prepare setup llava7b sweep others rest levers" >&2; exit 2 ;;
  esac
done
log "done"
