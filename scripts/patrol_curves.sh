#!/usr/bin/env bash
# F1/IoU of patrol mode against pose error and lighting change (docs/patrol.md): the synthetic
# Ped2 benchmark (test videos as scenes, seed 0) rebuilt with the default pose error
# (translation_px 6, rotation_deg 1.5, scale_error 0.03, jitter_px 0.7) or the default
# lighting change (gain 1 -0.3/+0.3, gamma 1 -0.25/+0.35, gradient 0.25) scaled by k, the
# rest at default difficulty; one line per point (POSE_KS, LIGHT_KS: other k; beyond k = 2 the
# pose error makes views leave the plate). Usage: scripts/patrol_curves.sh WORKDIR
set -euo pipefail
work=${1:?usage: scripts/patrol_curves.sh WORKDIR}
vad=${VAD:-vad}
ped2=${PED2:-../shared/data/ped2}
mkdir -p "$work"

point() {  # name, then --set overrides
  local name=$1; shift
  rm -rf "$work/$name" "$work/$name-eval"
  $vad patrol synth "$ped2"/test/*.mp4 --objects "$ped2" --out "$work/$name" --seed 0 \
    --no-progress "$@" > /dev/null
  $vad patrol eval "$work/$name" --out "$work/$name-eval" --no-progress > "$work/$name.log"
  python3 - "$name" "$work/$name-eval/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:<12} f1={r['f1']:.3f} iou={r['iou']:.3f} match={r['match_accuracy']:.3f} "
      f"unaligned={r['unaligned_share']:.3f} normal_alerting={r['normal_sequences_with_alerts']}"
      f"/{r['normal_sequences']}")
PY
}

for k in ${POSE_KS:-0 0.5 1 1.5 2}; do
  point "pose-x$k" \
    --set patrol.synth.translation_px="$(python3 -c "print(6*$k)")" \
    --set patrol.synth.rotation_deg="$(python3 -c "print(1.5*$k)")" \
    --set patrol.synth.scale_error="$(python3 -c "print(0.03*$k)")" \
    --set patrol.synth.jitter_px="$(python3 -c "print(0.7*$k)")"
done
for k in ${LIGHT_KS:-0 0.5 1.5 2}; do
  point "light-x$k" \
    --set patrol.synth.gain="$(python3 -c "print([round(1-0.3*$k,3), round(1+0.3*$k,3)])")" \
    --set patrol.synth.gamma="$(python3 -c "print([round(1-0.25*$k,3), round(1+0.35*$k,3)])")" \
    --set patrol.synth.gradient="$(python3 -c "print(0.25*$k)")"
done
