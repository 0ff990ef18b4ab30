#!/usr/bin/env bash
# The whole GPU check of the plane engine, in one call (issue 16, item 4).
#
#   benchmarks/gpu.sh               # on a machine with CUDA
#   benchmarks/gpu.sh --cpu-smoke   # anywhere: the same steps on the CPU at reduced sizes
#
# Steps (CUDA): rebuild the default run's weights with the library (config.yaml settings; or read
# them from results/ when a completed run is there), then benchmarks/bench_planes.py on CUDA for
# the default curve plane and the CIFAR-shaped 3x32x32 SimpleCNN (engine against the reference
# loop, same process), then a 1000 x 1000 plane of the CIFAR-shaped SimpleCNN with 512 + 512
# random images, timed (stopped after BIG_SECONDS and extrapolated when it would take longer).
# Goals: engine >= 10x the reference loop on one GPU; the 1000 x 1000 plane in under 10 minutes.
#
# The engine runs with config.yaml's options (compile: auto compiles where the calibrated time of
# the job is at least compile_min_seconds: the 1000 x 1000 plane if it would take that long, not
# the small planes); the CIFAR-shaped case also runs the engine variants in VARIANTS (default
# compile=on), against the same reference.
#
# Writes bench.log, bench.json and summary.md to $OUT (or ./bench-out). Environment: PYTHON
# (default python3) with torch and the project's requirements; BIG_SECONDS (default 240);
# MEMORY_MB (engine memory budget on the GPU, default 60000); VARIANTS.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=cuda
case "${1:-}" in
  "") ;;
  --cpu-smoke) mode=cpu-smoke ;;
  *) echo "usage: $0 [--cpu-smoke]" >&2; exit 2 ;;
esac
out="${OUT:-./bench-out}"
mkdir -p "$out"
py="${PYTHON:-python3}"

if ! "$py" -c "import torch, numpy, pandas, yaml, sklearn, tqdm" 2>/dev/null; then
  echo "gpu.sh: $py lacks torch or another requirement (see environment.yml); set PYTHON" >&2
  exit 3
fi
if [ "$mode" = cuda ]; then
  if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device is visible to torch; run with --cpu-smoke to check the script on a CPU" >&2
    exit 4
  fi
  "$py" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" | tee "$out/bench.log"
  args=(--device cuda --cases curve,cifar --cifar-points 64 --cifar-n 512 --variants "${VARIANTS:-compile=on}"
        --big 1000 --big-n 512 --big-seconds "${BIG_SECONDS:-240}" --memory-budget-mb "${MEMORY_MB:-60000}")
  label="CUDA"
else
  echo "CPU SMOKE RUN: reduced sizes (quick weights, 30 curve-plane points, 3 CIFAR-shaped points with 64 + 64 images,"
  echo "a 24 x 24 plane with 32 + 32 images); it checks that the script works, not the GPU goals." | tee "$out/bench.log"
  args=(--device cpu --threads 1 --quick --cases curve,cifar --points 30 --cifar-points 3 --cifar-n 64
        --big 24 --big-n 32 --big-seconds 20)
  label="CPU SMOKE (reduced sizes; not the GPU goals)"
fi

start=$(date +%s)
"$py" benchmarks/bench_planes.py "${args[@]}" --json "$out/bench.json" 2>&1 | grep -v "it/s]" | tee -a "$out/bench.log"
echo "total $(( $(date +%s) - start )) s" | tee -a "$out/bench.log"

"$py" - "$out/bench.json" "$out/summary.md" "$label" <<'EOF'
import json, sys

res = json.load(open(sys.argv[1]))
label = sys.argv[3]
lines = [f"# Plane engine GPU check: {label}", "", f"device {res['device']}, torch {res['torch']}; "
         f"weights: {res.get('weights', '-')}", "",
         "| case | points | reference ms/pt | engine ms/pt | ratio | engine GFLOP/s (of GEMM) | max abs err, loss (all) | path |",
         "|---|---|---|---|---|---|---|---|"]
for r in res["runs"]:
    p = r["path"]
    lines.append(f"| {r['case']} | {r['points']} | {r['ref_ms']:.2f} | {r['engine_ms']:.3f} | {r['ratio']:.1f}x "
                 f"| {r['engine_gflops']:.0f} ({r['engine_gflops'] / r['gemm_gflops']:.0%}) | {r['max_loss_err']:.1e} ({r['max_abs_err']:.1e}) "
                 f"| {p['engine_mode']} {p['point_chunk']}x{p['data_chunk']}{' compiled' if p['compiled'] else ''} |")
big = res.get("big")
lines.append("")
if big:
    lines.append(f"{big['resolution']} x {big['resolution']} plane, {big['samples']} images per point: "
                 f"{big['points_done']} points in {big['seconds']:.1f} s ({big['points_per_s']:.0f} points/s), "
                 f"setup {big['setup_s']:.1f} s; whole plane {'measured' if big['complete'] else 'extrapolated'}: "
                 f"{big['full_plane_s']:.0f} s ({big['full_plane_s'] / 60:.1f} min).")
ratios = [r["ratio"] for r in res["runs"]]
ok_ratio = min(ratios) >= 10 if ratios else False
ok_big = bool(big) and big["full_plane_s"] < 600
ok_err = all(r["max_loss_err"] <= 1e-5 for r in res["runs"])
lines += ["", "Goals (meaningful on CUDA only):",
          f"- engine >= 10x the reference loop in every case: {'met' if ok_ratio else 'NOT met'} (min {min(ratios):.1f}x)",
          f"- {big['resolution'] if big else '?'} x {big['resolution'] if big else '?'} plane under 10 minutes: {'met' if ok_big else 'NOT met'}",
          f"- losses equal the reference within 1e-5: {'yes' if ok_err else 'NO'}; flipped near-tie predictions: "
          f"{sum(r['flipped_predictions'] for r in res['runs'])}"]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "wrote $out/bench.log, $out/bench.json, $out/summary.md"
