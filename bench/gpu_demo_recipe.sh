#!/usr/bin/env bash
# The demo recipe at N times its data and steps (`--scale N`), for a lent GPU machine that has PyTorch and
# transformers but no network and not all of our packages (docs/demo-model.md, "On a GPU").
#   here:   bench/gpu_demo_recipe.sh wheels     the pure-Python packages that machine lacks, into .whl/ (ignored)
#   there:  bash bench/gpu_demo_recipe.sh run N (the device tool's run, carry [".whl"]); what it writes under
#           $OUT: results.tgz (eval.json, timings.json, each stage's metrics.csv, the recipe's log) and the
#           exported model in parts of 15 MB (model.tgz.*; `cat model.tgz.* | tar -xz -C DIR`).
# A run stops itself after DEMO_LIMIT_S seconds (540: a device command may run 10 minutes) and sends back what
# it has; called again while the machine is still warm, it goes on where it was: the recipe reuses finished
# steps and resumes an interrupted one from its last checkpoint.
# `run short` runs the CI version (--short) instead, to try the whole path on a CPU in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
wheels)
  mkdir -p .whl
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # what training imports beyond that machine's packages (its list: the device tool's KINDS.md); pure Python
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d .whl "open_clip_torch>=3.2,<4" ftfy wcwidth
  ls .whl
  ;;
run)
  what=${2:-5}
  out=${OUT:-/tmp/gpu-demo-out}
  work=/tmp/demo-recipe-$what
  mkdir -p "$out" /tmp/demo-extra
  [[ -d /tmp/demo-extra/open_clip ]] || python3 -m pip install --quiet --no-index --no-deps --target /tmp/demo-extra .whl/*.whl
  export PYTHONPATH=/tmp/demo-extra${PYTHONPATH:+:$PYTHONPATH}  # also for the recipe's training/run.py steps
  if [[ $what == short ]]; then args=(--short); else args=(--scale "$what"); fi
  { nvidia-smi -L 2>/dev/null || echo "no GPU"
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
                "cuda", torch.cuda.is_available())'; } > "$work.device.txt" 2>&1
  set +e
  # stopped before the command's limit, so that what it has done still comes back
  timeout --signal=INT "${DEMO_LIMIT_S:-540}" python3 -m training.demo_world.recipe "${args[@]}" --out "$work" --export "$work/export" 2>&1 \
    | tr '\r' '\n' | grep --line-buffered -v -E 'it/s\]?$|step/s|q/s\]?$|img/s\]?$' >> "$work.log"
  status=${PIPESTATUS[0]}
  set -e
  grep '\[recipe\]' "$work.log" || tail -40 "$work.log"
  rm -rf "$work.results" && mkdir "$work.results"
  cp "$work.log" "$work.results/recipe.log" && cp "$work.device.txt" "$work.results/device.txt"
  for f in "$work"/eval.json "$work"/timings.json; do if [[ -f $f ]]; then cp "$f" "$work.results/"; fi; done
  for f in "$work"/*/metrics.csv; do
    if [[ -f $f ]]; then cp "$f" "$work.results/$(basename "$(dirname "$f")")-metrics.csv"; fi
  done
  tar -C "$work.results" -czf "$out/results.tgz" .
  if [[ -d $work/export ]]; then tar -C "$work/export" -czf - . | split -b 15M - "$out/model.tgz."; fi
  exit "$status"
  ;;
*)
  grep "^#" "$0" | tail -n +2; exit 2  # the header above
  ;;
esac
