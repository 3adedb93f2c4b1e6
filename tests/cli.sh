#!/usr/bin/env bash
# CLI behaviour (docs/design.md section 4): exit codes 0 / 1 / 2, one-line messages,
# --help everywhere, the CSV log, no half-written files.
set -u
build=${1:-build}
lopt="$build/lopt"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

source "$(dirname "$0")/lib.bash"

expect 2 "usage: lopt" -- 
expect 2 "unknown command" -- frobnicate
expect 0 "commands:" -- --help
for c in tasks train bench init-lopt info; do expect 0 "usage: lopt $c" -- "$c" --help; done
# every default in --help comes from one place, the value the flag starts with: none
# is stated twice, and the bound ones show the library's defaults
twice=$(for c in tasks train bench init-lopt info meta-train compare "pathology surface" \
          "pathology gradvar" "pathology bias"; do
          # shellcheck disable=SC2086
          "$lopt" $c --help 2>&1 | grep "(default.*(default" | sed "s/^/$c: /"; done)
if [ -z "$twice" ]; then echo "ok   --help states each default once"
else echo "FAIL: a default stated twice in --help:"; echo "$twice"; fail=1; fi
expect 0 "--estimator S .*(default merged)" -- meta-train --help
expect 0 "--eval-seeds S .*(default 10000,10001,10002)" -- meta-train --help
expect 0 "--steps N .*(default 1000)" -- compare --help
expect 0 "--baselines S .*(default adam,rmsprop,momentum)" -- compare --help
expect 0 "--Ks S .*(default 1,3,10,30,100,300)" -- pathology gradvar --help
expect 0 "fmnist-cnn" -- tasks
expect 2 "unknown task 'nope'" -- train --task nope --opt adam --steps 10
expect 2 "bad value for --steps: 'ten'" -- train --task quadratic --opt adam --steps ten
expect 2 "bad value for --lr" -- train --task quadratic --opt adam --steps 10 --lr 1e-3x
expect 2 "missing value for --task" -- train --opt adam --steps 10 --task
expect 2 "missing --steps" -- train --task quadratic --opt adam
expect 2 "unknown option '--stpes'" -- train --task quadratic --opt adam --stpes 10
expect 2 "unknown optimizer" -- train --task quadratic --opt adamw --steps 10
expect 2 "must be positive" -- train --task quadratic --opt adam --steps 0
expect 2 "usage: lopt train" -- train --task quadratic --opt adam --steps -5
# on AVX-512 every fmnist-cnn kernel is lopt's own, so training does not depend on which
# kernels OpenBLAS picks (a change that handed small dense shapes to CBLAS broke this)
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  r1=$(env -u OPENBLAS_CORETYPE "$lopt" train --task fmnist-cnn --opt adam --lr 1e-2 --steps 30 --seed 3 2>/dev/null | tail -1 | cut -d' ' -f1-7)
  r2=$(OPENBLAS_CORETYPE=Haswell "$lopt" train --task fmnist-cnn --opt adam --lr 1e-2 --steps 30 --seed 3 2>/dev/null | tail -1 | cut -d' ' -f1-7)
  if [ -n "$r1" ] && [ "$r1" = "$r2" ]; then echo "ok   fmnist-cnn training is the same under OpenBLAS's own and Haswell kernels ($r1)"
  else echo "FAIL: fmnist-cnn training depends on OPENBLAS_CORETYPE: '$r1' vs '$r2'"; fail=1; fi
fi
# a missing dataset names the Debian package, exit 1
LOPT_FMNIST_DIR="$tmp/none" expect 1 "dataset-fashion-mnist" -- train --task fmnist8-mlp --opt adam --steps 5

# a real run writes the CSV with the documented header, atomically
expect 0 "final train_loss" -- train --task fmnist8-mlp --opt adam --steps 50 --eval-every 10 --log "$tmp/log.csv"
if [ "$(head -1 "$tmp/log.csv")" != "step,train_loss,valid_loss,time_s" ] || [ "$(wc -l <"$tmp/log.csv")" -ne 7 ]; then
  echo "FAIL: CSV log header/rows wrong:"; cat "$tmp/log.csv"; fail=1
else echo "ok   CSV log has header and 6 rows"; fi
ls "$tmp" | grep -q "\.tmp\." && { echo "FAIL: temp file left behind"; fail=1; }
# the quadratic needs no data and its loss falls
"$lopt" train --task quadratic --opt adam --lr 0.1 --steps 200 --log "$tmp/q.csv" >/dev/null 2>&1
first=$(sed -n 2p "$tmp/q.csv" | cut -d, -f3); last=$(tail -1 "$tmp/q.csv" | cut -d, -f3)
if awk "BEGIN{exit !($last < 0.1 * $first)}"; then echo "ok   quadratic loss $first -> $last"
else echo "FAIL: quadratic loss did not fall: $first -> $last"; fail=1; fi
# an unwritable log path is a runtime failure with a reason
expect 1 "cannot write" -- train --task quadratic --opt sgd --steps 5 --log "$tmp/no/such/dir/x.csv"

# learning-rate schedules (the factors themselves are checked against torch in test_optim)
expect 0 "opt adam lr 0.01 schedule cosine warmup 100 steps 2000 seed 0" -- train --task quadratic \
  --opt adam --lr 1e-2 --schedule cosine --warmup 100 --steps 2000
expect 0 "opt sgd lr 0.01 schedule linear warmup 10 steps 200" -- train --task quadratic --opt sgd \
  --schedule linear --steps 200
# past a learned optimizer's horizon: a note, the time features clamped at it by
# default, --t-max 0 turns that off and changes the run
m8=models/fmnist8-mlp.lopt
for args in "--steps 1100:clamped at t = --t-max" "--steps 1100 --t-max 0:expect it to drift"; do
  if "$lopt" train --task quadratic --opt learned:$m8 ${args%%:*} 2>&1 >/dev/null | grep -q "past the 1000-step horizon.*${args#*:}"
  then echo "ok   train ${args%%:*} past the horizon: a note (${args#*:})"
  else echo "FAIL: train ${args%%:*}: no note about the horizon"; fail=1; fi
done
expect 2 "learned optimizer only" -- train --task quadratic --opt adam --steps 10 --t-max 5
c1=$("$lopt" train --task quadratic --opt learned:$m8 --steps 1100 2>/dev/null | grep final | sed "s/ time_s.*//")
c0=$("$lopt" train --task quadratic --opt learned:$m8 --steps 1100 --t-max 0 2>/dev/null | grep final | sed "s/ time_s.*//")
c9=$("$lopt" train --task quadratic --opt learned:$m8 --steps 1000 --t-max 0 2>/dev/null | grep final | sed "s/ time_s.*//")
c8=$("$lopt" train --task quadratic --opt learned:$m8 --steps 1000 2>/dev/null | grep final | sed "s/ time_s.*//")
if [ -n "$c1" ] && [ "$c1" != "$c0" ] && [ "$c9" = "$c8" ]; then echo "ok   --t-max: same run up to the horizon, different past it"
else echo "FAIL: --t-max: '$c1' vs '$c0' (1100 steps), '$c8' vs '$c9' (1000)"; fail=1; fi
expect 0 "opt momentum lr 0.01 schedule const warmup 0 steps 50" -- train --task quadratic \
  --opt momentum --schedule const --steps 50
expect 0 "opt momentum lr 0.01 steps 50 seed 0" -- train --task quadratic --opt momentum --steps 50
expect 2 "unknown schedule 'step' \(const, cosine, linear\)" -- train --task quadratic --opt adam \
  --steps 10 --schedule step
grep -q "^usage: lopt train" "$tmp/err" || { echo "FAIL: no usage line for a bad --schedule"; fail=1; }
expect 2 "--warmup must be non-negative" -- train --task quadratic --opt adam --steps 10 --warmup -1
expect 2 "--warmup 10 must be less than --steps 10" -- train --task quadratic --opt adam --steps 10 \
  --schedule cosine --warmup 10
expect 2 "bad value for --warmup" -- train --task quadratic --opt adam --steps 10 --warmup 1.5
# the schedule reaches the optimizer: const is the unscheduled run, cosine and a
# warm-up change it (step, train and valid loss columns; time differs)
for s in none const cosine warm; do
  case $s in none) a=() ;; const) a=(--schedule const) ;; cosine) a=(--schedule cosine) ;;
             warm) a=(--warmup 20) ;; esac
  "$lopt" train --task quadratic --opt sgd --steps 100 "${a[@]}" --log "$tmp/s_$s.csv" >/dev/null 2>&1
  cut -d, -f1-3 "$tmp/s_$s.csv" >"$tmp/s_$s.cut"
done
if cmp -s "$tmp/s_none.cut" "$tmp/s_const.cut" && ! cmp -s "$tmp/s_none.cut" "$tmp/s_cosine.cut" &&
   ! cmp -s "$tmp/s_none.cut" "$tmp/s_warm.cut"; then
  echo "ok   --schedule const = no schedule; cosine and --warmup change the run"
else echo "FAIL: the schedule does not reach the optimizer as it should"; fail=1; fi

# learned optimizers: lopt init-lopt writes an untrained .lopt that train accepts
expect 0 "wrote .*untrained paper" -- init-lopt --out "$tmp/u.lopt" --seed 3
expect 0 "untrained lo" -- init-lopt --arch lo --out "$tmp/lo.lopt"
expect 2 "unknown architecture 'big'" -- init-lopt --arch big --out "$tmp/x.lopt"
expect 2 "missing --out" -- init-lopt --arch lo
expect 1 "cannot write" -- init-lopt --out "$tmp/no/such/dir/x.lopt"
# hand-designed starting points: normalised momentum trains the quadratic down
expect 0 "like momentum --lr 0.01 --beta 0.9" -- init-lopt --like momentum --lr 0.01 --out "$tmp/mom.lopt"
expect 0 "final train_loss 0\.0" -- train --task quadratic --opt "learned:$tmp/mom.lopt" --steps 300
expect 2 "--beta 0.95 is not one of the paper preset's momenta" -- init-lopt --like momentum --beta 0.95 --out "$tmp/x.lopt"
expect 2 "--like must be random, sgd or momentum" -- init-lopt --like adam --out "$tmp/x.lopt"
expect 2 "--lr must be in" -- init-lopt --like sgd --lr 0 --out "$tmp/x.lopt"
expect 0 "opt learned:.*u.lopt steps 20" -- train --task quadratic --opt "learned:$tmp/u.lopt" --steps 20
expect 0 "final train_loss" -- train --task quadratic --opt "learned:$tmp/lo.lopt" --steps 20
expect 1 "cannot open .*missing.lopt" -- train --task quadratic --opt "learned:$tmp/missing.lopt" --steps 5
cp "$tmp/u.lopt" "$tmp/bad.lopt"
printf '\x55' | dd of="$tmp/bad.lopt" bs=1 seek=500 conv=notrunc status=none
expect 1 "bad.lopt: corrupt: checksum mismatch" -- train --task quadratic --opt "learned:$tmp/bad.lopt" --steps 5
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL: the bad-file reason is not one line"; fail=1; }
head -c 300 "$tmp/u.lopt" >"$tmp/short.lopt"
expect 1 "short.lopt: truncated" -- train --task quadratic --opt "learned:$tmp/short.lopt" --steps 5
expect 1 "not a .lopt file" -- train --task quadratic --opt "learned:$tmp/q.csv" --steps 5
expect 2 "--lr does not apply" -- train --task quadratic --opt "learned:$tmp/u.lopt" --steps 5 --lr 0.1
expect 2 "needs a file name" -- train --task quadratic --opt learned: --steps 5
expect 2 "--schedule does not apply to a learned optimizer \(it has its own schedule\)" -- train \
  --task quadratic --opt "learned:$tmp/u.lopt" --steps 5 --schedule cosine
expect 2 "--warmup does not apply to a learned optimizer" -- train --task quadratic \
  --opt "learned:$tmp/u.lopt" --steps 5 --warmup 2

# the nominal form: untrained it is exactly normalised momentum (beta 0.9) at its step,
# so it trains like the paper-form MLP set up as that optimizer with no noise
expect 0 "untrained nominal .*--nominal-step 0.003 --nominal-mom 1.*620 weights" -- init-lopt --arch nominal --out "$tmp/nom.lopt"
expect 0 "nominal-step 0.01 --nominal-mom -1" -- init-lopt --arch nominal --nominal-step 0.01 --nominal-mom -1 --out "$tmp/nomg.lopt"
"$lopt" init-lopt --like momentum --lr 0.003 --noise 0 --out "$tmp/hand.lopt" >/dev/null
v_nom=$("$lopt" train --task fmnist8-mlp --opt "learned:$tmp/nom.lopt" --steps 100 2>/dev/null | grep -o 'valid_loss [0-9.]*' | cut -d' ' -f2)
v_hand=$("$lopt" train --task fmnist8-mlp --opt "learned:$tmp/hand.lopt" --steps 100 2>/dev/null | grep -o 'valid_loss [0-9.]*' | cut -d' ' -f2)
if [ -n "$v_nom" ] && awk "BEGIN{d=$v_nom-$v_hand; exit !(d < 1e-3 && d > -1e-3 && $v_nom < 1.5)}"; then
  echo "ok   untrained nominal trains like hand-designed normalised momentum ($v_nom vs $v_hand)"
else echo "FAIL: untrained nominal ($v_nom) vs hand-designed normalised momentum ($v_hand)"; fail=1; fi
expect 0 "final train_loss" -- train --task quadratic --opt "learned:$tmp/nomg.lopt" --steps 20
expect 2 "--nominal-mom 5 is not -1" -- init-lopt --arch nominal --nominal-mom 5 --out "$tmp/x.lopt"
expect 2 "--nominal-step must be in" -- init-lopt --arch nominal --nominal-step 0 --out "$tmp/x.lopt"
expect 2 "apply to --arch nominal only" -- init-lopt --nominal-step 0.01 --out "$tmp/x.lopt"
expect 2 "--like does not apply to --arch nominal" -- init-lopt --arch nominal --like momentum --out "$tmp/x.lopt"
# --schedule: a nominal form started on a fitted hand-designed schedule
expect 0 "cosine at peak 0.01 over 200 steps \(warm-up 10\)" -- init-lopt --arch nominal-adam --schedule cosine --peak-lr 0.01 --horizon 200 --out "$tmp/cos.lopt"
expect 0 "horizon      200 inner steps" -- info "$tmp/cos.lopt"
expect 0 "final train_loss" -- train --task quadratic --opt "learned:$tmp/cos.lopt" --steps 50
expect 2 "--schedule needs --horizon" -- init-lopt --arch nominal --schedule cosine --out "$tmp/x.lopt"
expect 2 "applies to --arch nominal.nominal-adam only" -- init-lopt --schedule cosine --horizon 9 --out "$tmp/x.lopt"
expect 2 "--peak-lr applies only with --schedule" -- init-lopt --arch nominal --peak-lr 0.1 --out "$tmp/x.lopt"
expect 2 "--floor must be in" -- init-lopt --arch nominal --schedule linear --horizon 9 --floor 0 --out "$tmp/x.lopt"
expect 2 "--schedule: .*step" -- init-lopt --arch nominal --schedule step --horizon 9 --out "$tmp/x.lopt"
expect 2 "warm" -- init-lopt --arch nominal --schedule cosine --horizon 9 --warmup 9 --out "$tmp/x.lopt"

# lopt info: form, architecture, horizon, provenance; bad files exit 1 in one line
expect 0 "form +mlp: w <- w - 0.001 d exp\(0.001 s\)" -- info "$tmp/u.lopt"
expect 0 "format version 2" -- info "$tmp/u.lopt"
expect 0 "form +nominal: w <- w - 0.003 exp\(sched\(t\)\) norm\(m\[beta 0.9\]\)" -- info "$tmp/nom.lopt"
expect 0 "residual +zero" -- info "$tmp/nom.lopt"
expect 0 "norm\(g\)" -- info "$tmp/nomg.lopt"
expect 0 "format version 1" -- info tests/data/v1-fmnist8-mlp.lopt
expect 0 "horizon +unknown \(format version 1" -- info tests/data/v1-fmnist8-mlp.lopt
expect 0 "trained +on fmnist8-mlp, merged estimator, valid outer loss, 3000 outer steps" -- info tests/data/v1-fmnist8-mlp.lopt
# meta-training records the form and the horizon
"$lopt" meta-train --task quadratic --arch nominal --estimator rp --K 5 --samples 2 --outer-steps 2 --horizon 40 \
  --loss-clip 0 --outer-loss train --threads 2 --out "$tmp/mt.lopt" >/dev/null 2>&1 || { echo "FAIL: meta-train --arch nominal"; fail=1; }
expect 0 "horizon +40 inner steps" -- info "$tmp/mt.lopt"
expect 0 "trained +on quadratic, rp estimator" -- info "$tmp/mt.lopt"
expect 0 "final train_loss" -- train --task quadratic --opt "learned:$tmp/mt.lopt" --steps 20
expect 1 "bad.lopt: corrupt: checksum mismatch" -- info "$tmp/bad.lopt"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL: info's bad-file reason is not one line"; fail=1; }
expect 1 "short.lopt: truncated" -- info "$tmp/short.lopt"
expect 1 "cannot open .*missing.lopt" -- info "$tmp/missing.lopt"
expect 2 "missing FILE.lopt" -- info
expect 2 "one file at a time" -- info "$tmp/u.lopt" "$tmp/nom.lopt"
expect 2 "unknown option '--verbose'" -- info --verbose "$tmp/u.lopt"
ls "$tmp" | grep -q "\.tmp\." && { echo "FAIL: temp file left behind"; fail=1; }
exit $fail
