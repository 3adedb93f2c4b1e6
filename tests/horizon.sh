#!/usr/bin/env bash
# lopt meta-train, learning at the horizon: the --eval-every column equals a
# separate `lopt train` of the kept OUT.best.lopt on the same seed; nres, fulles
# and pooled merged runs resume bit-identically; the new options refuse bad
# values; a version-1 checkpoint (runs/fmnist-cnn) still resumes.
set -u
build=${1:-build}
lopt="$build/lopt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
source "$(dirname "$0")/lib.bash"

# progress at the horizon: row 0 is the start, then every 3 outer steps
"$lopt" meta-train --task fmnist8-mlp --estimator nres --K 10 --samples 4 --horizon 100 --seed 1 \
  --outer-steps 6 --eval-every 3 --eval-seeds 10000 --out "$tmp/e.lopt" --log "$tmp/e.csv" \
  >"$tmp/e.out" 2>&1 || { echo "FAIL: meta-train --eval-every: $(tail -2 "$tmp/e.out")"; fail=1; }
rows=$(awk -F, 'NR > 1 && $14 != "" {print $1}' "$tmp/e.csv" | tr '\n' ' ')
[ "$rows" = "0 3 6 " ] && echo "ok   evaluated at outer steps $rows" \
  || { echo "FAIL: evaluated rows '$rows', want '0 3 6 '"; fail=1; }
[ -f "$tmp/e.best.lopt" ] && [ -f "$tmp/e-eval.svg" ] && [ -f "$tmp/e-eval.png" ] \
  && echo "ok   e.best.lopt and the eval plot written" || { echo "FAIL: best .lopt or eval plot missing"; fail=1; }
best=$(awk -F, 'NR > 1 && $14 != "" {print $14, $1}' "$tmp/e.csv" | sort -g | head -1)
"$lopt" train --task fmnist8-mlp --opt "learned:$tmp/e.best.lopt" --seed 10000 --steps 100 \
  --eval-every 10 --log "$tmp/t.csv" >/dev/null 2>&1 || { echo "FAIL: train the best"; fail=1; }
again=$(tail -1 "$tmp/t.csv" | cut -d, -f3)
if awk -v a="${best% *}" -v b="$again" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }'; then
  echo "ok   eval_final of the best step (${best#* }: ${best% *}) = lopt train of OUT.best.lopt ($again)"
else echo "FAIL: eval_final ${best% *} at step ${best#* } but lopt train gives $again"; fail=1; fi
grep -q "best at the horizon: outer step ${best#* }," "$tmp/e.out" \
  && echo "ok   the summary names the best step" || { echo "FAIL: summary: $(tail -1 "$tmp/e.out")"; fail=1; }

# resumes bit-identically: nres (kept eps and both states), fulles (shaped), pooled merged
for est in "nres --K 5 --eval-every 2 --eval-seeds 10000" "fulles --outer-batches 2 --shape rank" \
           "merged --K 5 --pool 3 --outer-weight tail:0.5" \
           "es --K 5 --arch nominal-adam --train nominal --outer-weight end"; do
  name=${est%% *}
  args=(--task fmnist8-mlp --estimator $est --samples 3 --horizon 30 --seed 2 --threads 2)
  "$lopt" meta-train "${args[@]}" --outer-steps 8 --out "$tmp/$name-a.lopt" >/dev/null 2>&1
  "$lopt" meta-train "${args[@]}" --outer-steps 4 --out "$tmp/$name-b.lopt" >/dev/null 2>&1
  "$lopt" meta-train --out "$tmp/$name-b.lopt" --resume --outer-steps 8 >/dev/null 2>&1
  if cmp -s "$tmp/$name-a.lopt" "$tmp/$name-b.lopt"; then
    echo "ok   $name: 4 steps + resume to 8 = 8 steps (bit-identical)"
  else echo "FAIL: $name: resumed run differs"; fail=1; fi
done
cmp -s "$tmp/nres-a.best.lopt" "$tmp/nres-b.best.lopt" && echo "ok   nres: the best .lopt resumes too" \
  || { echo "FAIL: nres best .lopt differs after resume"; fail=1; }

# bad values
base=(meta-train --task quadratic --K 2 --samples 2 --outer-steps 1 --out "$tmp/x.lopt")
expect 2 "tail:F" -- "${base[@]}" --outer-weight tail:2
expect 2 "outer-weight" -- "${base[@]}" --outer-weight last
expect 2 "shape" -- "${base[@]}" --shape bogus
expect 2 "needs an es estimator" -- "${base[@]}" --estimator rp --shape sign
expect 2 "test seed" -- "${base[@]}" --eval-every 1 --eval-seeds 1000
expect 2 "malformed --eval-seeds" -- "${base[@]}" --eval-every 1 --eval-seeds 10000,x
expect 2 "pool" -- "${base[@]}" --pool 0
expect 2 "outer-batches" -- "${base[@]}" --outer-batches 0
expect 2 "unknown estimator" -- "${base[@]}" --estimator nrs
"$lopt" "${base[@]}" --estimator merged >/dev/null 2>"$tmp/w.err"
grep -q "warning: merged estimates per-coordinate variances from 2 samples" "$tmp/w.err" \
  && echo "ok   merged with 2 samples warns" || { echo "FAIL: no warning for merged with 2 samples"; fail=1; }
"$lopt" "${base[@]}" --estimator merged --samples 4 --pool 2 >/dev/null 2>"$tmp/w.err"
grep -q "warning" "$tmp/w.err" && { echo "FAIL: merged with 4 x pool 2 warns"; fail=1; } \
  || echo "ok   merged with 4 samples pooled over 2 steps does not warn"
expect 2 "fixed when a run starts" -- meta-train --out "$tmp/e.lopt" --resume --eval-seeds 10001

# a warm start whose constants differ from the preset's (another nominal step) trains
# and resumes with them; --train schedule needs a form with a schedule
"$lopt" init-lopt --arch nominal --nominal-step 0.002 --out "$tmp/n0.lopt" >/dev/null 2>&1
nargs=(--task fmnist8-mlp --arch nominal --train schedule --estimator es --K 5 --samples 2 --horizon 30 --init "$tmp/n0.lopt")
"$lopt" meta-train "${nargs[@]}" --outer-steps 4 --out "$tmp/n1.lopt" >/dev/null 2>&1
"$lopt" meta-train "${nargs[@]}" --outer-steps 2 --out "$tmp/n2.lopt" >/dev/null 2>&1
"$lopt" meta-train --out "$tmp/n2.lopt" --resume --outer-steps 4 >/dev/null 2>&1
if cmp -s "$tmp/n1.lopt" "$tmp/n2.lopt" && "$lopt" info "$tmp/n1.lopt" | grep -q "0.002"; then
  echo "ok   --init with nominal step 0.002 keeps it, and resumes bit-identically"
else echo "FAIL: nominal --init with another step: $("$lopt" info "$tmp/n1.lopt" 2>&1 | head -3)"; fail=1; fi
expect 2 "schedule" -- "${base[@]}" --arch paper --train schedule
# x.lopt exists by now (the merged runs above): --force gets past the refusal to
# replace it, and the refused configuration then leaves it as it was
cp "$tmp/x.lopt" "$tmp/x0.lopt"
expect 2 "no exact reverse pass" -- "${base[@]}" --force --arch nominal-adam --estimator merged
cmp -s "$tmp/x.lopt" "$tmp/x0.lopt" && echo "ok   a refused --force run leaves OUT as it was" \
  || { echo "FAIL: a refused --force run changed OUT"; fail=1; }

# a version-1 checkpoint resumes (its log gains the evaluation columns)
if [ -f runs/fmnist-cnn/cnn.lopt.ckpt ]; then
  cp runs/fmnist-cnn/cnn.lopt.ckpt "$tmp/v1.lopt.ckpt"
  "$lopt" meta-train --out "$tmp/v1.lopt" --resume --outer-steps 1 --log "$tmp/v1.csv" >/dev/null 2>"$tmp/v1.err"
  if [ $? -eq 0 ] && head -1 "$tmp/v1.csv" | grep -q ",eval_final,eval_mean$" \
     && [ "$(awk -F, 'NR > 1 && NF != 15' "$tmp/v1.csv" | wc -l)" -eq 0 ]; then
    echo "ok   version-1 checkpoint resumes; its log has $(($(wc -l <"$tmp/v1.csv") - 1)) rows of 15 columns"
  else echo "FAIL: version-1 checkpoint: $(cat "$tmp/v1.err")"; fail=1; fi
fi
exit $fail
