#!/usr/bin/env bash
# lopt meta-train: a run killed mid-way (SIGTERM) and resumed ends bit-identical to
# an uninterrupted one (same seed, same threads); corrupt and truncated
# checkpoints are refused; the CSV log has a row per outer step.
set -u
build=${1:-build}
lopt="$build/lopt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
args=(--task fmnist8-mlp --estimator merged --K 8 --samples 2 --horizon 60 --seed 3 --threads 2)

"$lopt" meta-train "${args[@]}" --outer-steps 24 --checkpoint-every 5 --out "$tmp/a.lopt" --log "$tmp/a.csv" >/dev/null 2>&1 \
  || { echo "FAIL: uninterrupted run"; fail=1; }

# the interrupted run: SIGTERM after a checkpoint has been written
"$lopt" meta-train "${args[@]}" --outer-steps 100000 --checkpoint-every 5 --out "$tmp/b.lopt" >/dev/null 2>"$tmp/b.err" &
pid=$!
for _ in $(seq 600); do [ -f "$tmp/b.lopt.ckpt" ] && break; sleep 0.05; done

kill -TERM $pid
wait $pid
code=$?
if [ $code -ne 1 ] || ! grep -q "interrupted at outer step" "$tmp/b.err"; then
  echo "FAIL: SIGTERM: exit $code, $(cat "$tmp/b.err")"; fail=1
else echo "ok   SIGTERM writes a checkpoint and exits 1: $(grep -o 'interrupted at outer step [0-9]*' "$tmp/b.err")"; fi
steps=$(grep -o 'interrupted at outer step [0-9]*' "$tmp/b.err" | grep -o '[0-9]*$')
if [ "${steps:-0}" -ge 24 ]; then
  echo "FAIL: the interrupted run got past step 24 before SIGTERM ($steps): not a test of resuming"; fail=1; fi
"$lopt" meta-train --out "$tmp/b.lopt" --resume --outer-steps 24 --log "$tmp/b.csv" >/dev/null 2>&1 \
  || { echo "FAIL: resume"; fail=1; }
if cmp -s "$tmp/a.lopt" "$tmp/b.lopt"; then echo "ok   killed at step $steps + resumed = uninterrupted (bit-identical .lopt)"
else echo "FAIL: resumed run differs from the uninterrupted one"; fail=1; fi
# the logs agree except for the wall-clock columns
if diff <(cut -d, -f1-8,10-12 "$tmp/a.csv") <(cut -d, -f1-8,10-12 "$tmp/b.csv") >/dev/null; then
  echo "ok   logs agree ($(($(wc -l <"$tmp/a.csv") - 1)) rows)"
else echo "FAIL: logs differ"; diff <(cut -d, -f1-8,10-12 "$tmp/a.csv") <(cut -d, -f1-8,10-12 "$tmp/b.csv") | head; fail=1; fi
[ "$(wc -l <"$tmp/a.csv")" -eq 25 ] || { echo "FAIL: log has $(wc -l <"$tmp/a.csv") lines, want 25"; fail=1; }

# refusals: a flipped byte, a truncated file, a foreign file
cp "$tmp/a.lopt.ckpt" "$tmp/c.lopt.ckpt"
printf '\x55' | dd of="$tmp/c.lopt.ckpt" bs=1 seek=300 conv=notrunc 2>/dev/null
"$lopt" meta-train --out "$tmp/c.lopt" --resume >/dev/null 2>"$tmp/c.err"; code=$?
{ [ $code -eq 1 ] && grep -q "checksum" "$tmp/c.err"; } && echo "ok   corrupt checkpoint refused" \
  || { echo "FAIL: corrupt checkpoint: exit $code $(cat "$tmp/c.err")"; fail=1; }
head -c 1000 "$tmp/a.lopt.ckpt" >"$tmp/d.lopt.ckpt"
"$lopt" meta-train --out "$tmp/d.lopt" --resume >/dev/null 2>"$tmp/d.err"; code=$?
[ $code -eq 1 ] && echo "ok   truncated checkpoint refused: $(cat "$tmp/d.err")" \
  || { echo "FAIL: truncated checkpoint: exit $code"; fail=1; }
cp "$tmp/a.csv" "$tmp/e.lopt.ckpt"
"$lopt" meta-train --out "$tmp/e.lopt" --resume >/dev/null 2>"$tmp/e.err"; code=$?
{ [ $code -eq 1 ] && grep -q "not a lopt" "$tmp/e.err"; } && echo "ok   foreign checkpoint refused" \
  || { echo "FAIL: foreign checkpoint: exit $code"; fail=1; }
"$lopt" meta-train --out "$tmp/none.lopt" --resume >/dev/null 2>&1; [ $? -eq 1 ] \
  && echo "ok   missing checkpoint: exit 1" || { echo "FAIL: missing checkpoint"; fail=1; }
"$lopt" meta-train --estimator sgd >/dev/null 2>&1; [ $? -eq 2 ] && echo "ok   bad estimator: exit 2" \
  || { echo "FAIL: bad estimator"; fail=1; }
"$lopt" meta-train --estimator merged --samples 1 >/dev/null 2>&1; [ $? -eq 2 ] \
  && echo "ok   merged with one sample: exit 2" || { echo "FAIL: merged --samples 1"; fail=1; }
# every estimator runs and logs what it should (es weight 1 for es/pes, 0 for rp)
for est in rp es pes; do
  "$lopt" meta-train --task fmnist8-mlp --estimator $est --K 4 --samples 2 --horizon 10 --outer-steps 6 \
    --out "$tmp/$est.lopt" --log "$tmp/$est.csv" >/dev/null 2>&1 || { echo "FAIL: $est run"; fail=1; continue; }
  w=$(tail -1 "$tmp/$est.csv" | cut -d, -f7); resets=$(tail -1 "$tmp/$est.csv" | cut -d, -f10)
  want=1.0000; [ $est = rp ] && want=0.0000
  if [ "$w" = "$want" ] && [ "$resets" -gt 2 ]; then echo "ok   $est: es weight $w, $resets trajectory starts over 6 steps of horizon 10"
  else echo "FAIL: $est: es weight $w (want $want), resets $resets"; fail=1; fi
done
# a warm start from a .lopt of the same architecture; another architecture is refused
"$lopt" meta-train --task fmnist8-mlp --init "$tmp/a.lopt" --K 4 --samples 2 --outer-steps 1 --out "$tmp/w.lopt" >/dev/null 2>&1 \
  && echo "ok   --init warm start" || { echo "FAIL: --init"; fail=1; }
"$lopt" meta-train --task fmnist8-mlp --arch lo --init "$tmp/a.lopt" --K 4 --samples 2 --outer-steps 1 --out "$tmp/w2.lopt" >/dev/null 2>"$tmp/w.err"
[ $? -eq 1 ] && grep -q "architecture" "$tmp/w.err" && echo "ok   --init with another architecture: exit 1" \
  || { echo "FAIL: --init arch mismatch accepted"; fail=1; }
# the result trains a task
"$lopt" train --task fmnist8-mlp --opt "learned:$tmp/a.lopt" --steps 20 >/dev/null 2>&1 \
  && echo "ok   the meta-trained .lopt trains fmnist8-mlp" || { echo "FAIL: train with it"; fail=1; }
exit $fail
