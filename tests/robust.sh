#!/usr/bin/env bash
# Hostile input at the command line (issue 11, docs/reliability.md): every row of the
# issue's table reproduced and answered with a one-line reason and exit 2 (usage) or
# 1 (runtime) - never a crash, a hang, a replaced result or a half-written file.
set -u
build=${1:-build}
lopt="$build/lopt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
source "$(dirname "$0")/lib.bash"

check() {   # check DESCRIPTION COMMAND...: the command must succeed
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL: $what"; fail=1; fi
}
no_temps() { ! ls -a "$1" | grep -q '\.tmp\.'; }
# stop PID: waits up to 30 s for it to end (a background job of a script ignores
# SIGINT unless it installs a handler), then kills it; its exit status, 99 if it hung
stop() {
  local i
  for i in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1" 2>/dev/null; return 99; fi
  wait "$1"
}
mt=(meta-train --task quadratic --estimator es --K 2 --samples 2 --horizon 20 --loss-clip 0)

# 1. a finished run is never replaced without --force (or continued without --resume)
expect 0 "meta-train: 2 outer steps" -- "${mt[@]}" --outer-steps 2 --out "$tmp/a.lopt" --log "$tmp/a.csv"
cp "$tmp/a.lopt" "$tmp/a.keep"; cp "$tmp/a.lopt.ckpt" "$tmp/a.ckpt.keep"
expect 2 "--out .*a.lopt already exists: continue that run with --resume, or start afresh over it with --force" \
  -- "${mt[@]}" --outer-steps 3 --seed 5 --out "$tmp/a.lopt"
cmp -s "$tmp/a.lopt" "$tmp/a.keep" && cmp -s "$tmp/a.lopt.ckpt" "$tmp/a.ckpt.keep" \
  || { echo "FAIL: a refused meta-train changed its outputs"; fail=1; }
rm "$tmp/a.lopt"   # the checkpoint alone is a run too
expect 2 "checkpoint\) .*a.lopt.ckpt already exists" -- "${mt[@]}" --outer-steps 3 --out "$tmp/a.lopt"
cp "$tmp/a.keep" "$tmp/a.lopt"
expect 2 "--log .*a.csv already exists" -- "${mt[@]}" --outer-steps 3 --out "$tmp/fresh.lopt" --log "$tmp/a.csv"
expect 2 "not both" -- "${mt[@]}" --out "$tmp/a.lopt" --resume --force
# a --force run that is then refused (its configuration) removes nothing, not even
# a stale OUT.best.lopt that an accepted run without evaluation would remove
cp "$tmp/a.keep" "$tmp/a.best.lopt"
expect 2 "no exact reverse pass" -- "${mt[@]}" --estimator merged --arch nominal-adam --out "$tmp/a.lopt" --force
cmp -s "$tmp/a.lopt" "$tmp/a.keep" && cmp -s "$tmp/a.best.lopt" "$tmp/a.keep" \
  && echo "ok   a refused --force run leaves OUT and OUT.best.lopt as they were" \
  || { echo "FAIL: a refused --force run changed OUT or removed OUT.best.lopt"; fail=1; }
expect 0 "meta-train: 3 outer steps" -- "${mt[@]}" --outer-steps 3 --seed 5 --out "$tmp/a.lopt" --force
cmp -s "$tmp/a.lopt" "$tmp/a.keep" && { echo "FAIL: --force did not replace the run"; fail=1; }
[ -e "$tmp/a.best.lopt" ] && { echo "FAIL: --force without evaluation kept a stale OUT.best.lopt"; fail=1; }
expect 0 "wrote" -- init-lopt --out "$tmp/i.lopt"
expect 2 "--out .*i.lopt already exists: add --force" -- init-lopt --out "$tmp/i.lopt" --seed 4
expect 0 "wrote" -- init-lopt --out "$tmp/i.lopt" --seed 4 --force

# 2. out-of-range values on --resume are refused, never stored
expect 2 "--outer-steps must be >= 0" -- meta-train --out "$tmp/a.lopt" --resume --outer-steps -1
expect 0 "meta-train: 4 outer steps" -- meta-train --out "$tmp/a.lopt" --resume --outer-steps 4
expect 2 "out of range" -- meta-train --out "$tmp/a.lopt" --resume --eval-every -3
"$lopt" meta-train --out "$tmp/a.lopt" --resume --outer-steps 5 --K 7 --samples 9 >/dev/null 2>"$tmp/w.err"
grep -q "warning: --resume continues with the checkpoint's settings; ignoring --K, --samples" "$tmp/w.err" \
  && echo "ok   --resume names the flags it ignores" || { echo "FAIL: --resume ignored flags silently"; fail=1; }

# 3. numbers checked in the type they are stored in (float)
for f in "--outer-lr 1e39" "--sigma 1e39" "--grad-clip 1e39" "--sigma 1e-45" "--loss-clip -1" \
         "--grad-clip -1" "--diverge -1" "--diverge 0.5" "--seed -1"; do
  # shellcheck disable=SC2086
  expect 2 "usage: lopt meta-train" -- "${mt[@]}" --outer-steps 3 $f --out "$tmp/f.lopt"
done
[ -e "$tmp/f.lopt" ] && { echo "FAIL: a refused meta-train wrote its output"; fail=1; }
expect 2 "out of range: a single-precision float" -- train --task quadratic --opt sgd --steps 5 --lr 1e-50
expect 2 "malformed --lr-range '1e-3:1e39'" -- compare --task quadratic --baselines sgd --seeds 1 \
  --grid-points 2 --steps 5 --lr-range 1e-3:1e39 --out "$tmp/cmp"
[ -e "$tmp/cmp" ] && { echo "FAIL: a refused compare left a folder"; fail=1; }
expect 2 "want a finite number" -- train --task quadratic --opt sgd --steps 5 --lr nan

# 4. an output that is also an input (or another output) is refused, by identity
expect 0 "wrote" -- init-lopt --out "$tmp/l1.lopt"
cp "$tmp/l1.lopt" "$tmp/l1.keep"
expect 2 "--log and --opt learned: are the same file" -- train --task quadratic \
  --opt "learned:$tmp/l1.lopt" --steps 2 --log "$tmp/l1.lopt"
ln "$tmp/l1.lopt" "$tmp/hard.csv"; ln -s l1.lopt "$tmp/soft.csv"
expect 2 "are the same file" -- train --task quadratic --opt "learned:$tmp/l1.lopt" --steps 2 --log "$tmp/hard.csv"
expect 2 "are the same file" -- train --task quadratic --opt "learned:$tmp/./l1.lopt" --steps 2 --log "$tmp/soft.csv"
check "the input survived" cmp -s "$tmp/l1.lopt" "$tmp/l1.keep"
expect 2 "--out and --log are the same file" -- "${mt[@]}" --outer-steps 2 --out "$tmp/F" --log "$tmp/./F"
expect 2 "--init and --log are the same file" -- "${mt[@]}" --outer-steps 2 --init "$tmp/l1.lopt" \
  --out "$tmp/g.lopt" --log "$tmp/hard.csv"
mkdir -p "$tmp/cmpin"; cp "$tmp/l1.lopt" "$tmp/cmpin/curves.csv"
expect 2 "--out .*cmpin would overwrite the input" -- compare --task quadratic --baselines sgd \
  --seeds 1 --grid-points 2 --steps 5 --lopt "$tmp/cmpin/curves.csv" --out "$tmp/cmpin"
check "compare's input survived" cmp -s "$tmp/cmpin/curves.csv" "$tmp/l1.keep"

# 5. special files are never replaced: FIFOs, symbolic links, devices (as root)
mkfifo "$tmp/fifo"
timeout 10 "$lopt" init-lopt --out "$tmp/fifo" --force >/dev/null 2>"$tmp/err"; code=$?
{ [ $code -eq 1 ] && grep -q "it is a FIFO, not a regular file" "$tmp/err" && [ -p "$tmp/fifo" ]; } \
  && echo "ok   a FIFO target: exit 1, not replaced, no hang" || { echo "FAIL: FIFO target: exit $code $(cat "$tmp/err")"; fail=1; }
expect 1 "symbolic link" -- init-lopt --out "$tmp/soft.csv" --force
check "the symbolic link is still one" test -L "$tmp/soft.csv"
expect 1 "it is a directory" -- train --task quadratic --opt sgd --steps 5 --log "$tmp/cmpin"
if mknod "$tmp/devnode" c 1 7 2>/dev/null; then   # /dev/full's numbers, in our folder
  expect 1 "refusing to write .*devnode: it is a character device" -- init-lopt --out "$tmp/devnode" --force
  expect 1 "character device" -- train --task quadratic --opt sgd --steps 100000000 --log "$tmp/devnode"
  check "the device node is still a character device" test -c "$tmp/devnode"
else echo "skip character device targets (mknod not permitted)"; fi
# a bad --log is reported before training, not after it
t0=$SECONDS
expect 1 "cannot write .*no/dir/x.csv" -- train --task quadratic --opt sgd --steps 100000000 --log "$tmp/no/dir/x.csv"
[ $((SECONDS - t0)) -lt 10 ] || { echo "FAIL: the bad --log was reported only after training"; fail=1; }

# 7. reads are bounded: /dev/zero and endless pipes are refused at once
for a in "train --task quadratic --steps 5 --opt learned:/dev/zero" \
         "meta-train --task quadratic --outer-steps 1 --init /dev/zero --out $tmp/z.lopt" \
         "compare --task quadratic --steps 5 --baselines sgd --seeds 1 --lopt /dev/zero --out $tmp/zc" \
         "info /dev/zero"; do
  # shellcheck disable=SC2086
  timeout 10 "$lopt" $a >/dev/null 2>"$tmp/err"; code=$?
  { [ $code -eq 1 ] && grep -q "not a .lopt file" "$tmp/err"; } && echo "ok   lopt ${a%% *} ... /dev/zero -> 1" \
    || { echo "FAIL: lopt $a -> $code: $(cat "$tmp/err")"; fail=1; }
done
ln -s /dev/zero "$tmp/z2.lopt.ckpt"
expect 1 "refusing to write .*z2.lopt.ckpt: it is a symbolic link" -- meta-train --out "$tmp/z2.lopt" --resume
timeout 20 "$lopt" info <(yes) >/dev/null 2>"$tmp/err"; code=$?
[ $code -eq 1 ] && echo "ok   an endless pipe: exit 1" || { echo "FAIL: lopt info <(yes) -> $code"; fail=1; }

# 9. signals: two SIGINTs 4 ms apart stop meta-train cleanly; stale temps are cleaned
# (outer steps of ~0.1 s, so the second signal arrives while the first is being honoured)
"$lopt" meta-train --task fmnist8-mlp --estimator es --K 40 --samples 2 --horizon 200 --threads 1 \
  --outer-steps 100000000 --checkpoint-every 1 --out "$tmp/s.lopt" >/dev/null 2>"$tmp/s.err" &
pid=$!
for _ in $(seq 400); do [ -f "$tmp/s.lopt.ckpt" ] && break; sleep 0.05; done
kill -INT $pid; sleep 0.004; kill -INT $pid 2>/dev/null
stop $pid; code=$?
{ [ $code -eq 1 ] && grep -q "interrupted at outer step" "$tmp/s.err" && no_temps "$tmp"; } \
  && echo "ok   two SIGINTs 4 ms apart: exit 1, checkpoint written, no temp file" \
  || { echo "FAIL: two SIGINTs: exit $code, $(tail -1 "$tmp/s.err"), $(ls "$tmp" | grep tmp)"; fail=1; }
( exit 0 ) &   # a process that has exited: its pid names no process now
dead=$!
wait $dead
: >"$tmp/s.lopt.ckpt.tmp.$dead"
: >"$tmp/s.lopt.tmp.$dead"
expect 0 "meta-train: .* outer steps" -- meta-train --out "$tmp/s.lopt" --resume --outer-steps 0
check "stale temp files of a dead process are removed at the next start" no_temps "$tmp"
# train: the log keeps the rows so far; compare: no empty folder
"$lopt" train --task fmnist8-mlp --opt adam --steps 100000000 --eval-every 50 --log "$tmp/t.csv" >/dev/null 2>"$tmp/t.err" &
pid=$!; sleep 2; kill -TERM $pid; stop $pid; code=$?
{ [ $code -eq 1 ] && grep -q "interrupted after step" "$tmp/t.err" && [ "$(head -1 "$tmp/t.csv")" = "step,train_loss,valid_loss,time_s" ] &&
  [ "$(wc -l <"$tmp/t.csv")" -gt 2 ] && no_temps "$tmp"; } \
  && echo "ok   SIGTERM during train: exit 1, the log has $(($(wc -l <"$tmp/t.csv") - 1)) rows" \
  || { echo "FAIL: SIGTERM during train: exit $code $(cat "$tmp/t.err")"; fail=1; }
"$lopt" compare --task fmnist8-mlp --steps 100000000 --baselines sgd --seeds 1 --grid-points 2 --out "$tmp/ci/nested" >/dev/null 2>"$tmp/c.err" &
pid=$!; sleep 2; kill -INT $pid; stop $pid; code=$?
{ [ $code -eq 1 ] && grep -q "interrupted; nothing written" "$tmp/c.err" && [ ! -e "$tmp/ci" ]; } \
  && echo "ok   SIGINT during compare: exit 1, no folder left" || { echo "FAIL: SIGINT during compare: exit $code $(cat "$tmp/c.err")"; fail=1; }
# a diverged train run keeps a CSV of finite rows
expect 1 "training diverged at step" -- train --task quadratic --opt sgd --lr 10 --steps 100 --eval-every 1 --log "$tmp/d.csv"
if [ "$(head -1 "$tmp/d.csv")" = "step,train_loss,valid_loss,time_s" ] &&
   awk -F, 'NR > 1 { if (NF != 4 || $2 !~ /^-?[0-9.]+$|^-?inf$|^nan$/) exit 1 }' "$tmp/d.csv"; then
  echo "ok   the log of a diverged run is a well-formed CSV"
else echo "FAIL: the log of a diverged run"; cat "$tmp/d.csv"; fail=1; fi

# 10. out of memory: one line and exit 1 (not under AddressSanitizer, which needs the address space).
# fmnist-cnn runs a batch a few images at a time, so only the gathered batch (205 MB at
# 65536 images) grows with --batch: 700 MB of address space runs --batch 128 but not that.
if [ -z "${LOPT_ASAN:-}" ]; then
  (ulimit -v 700000; "$lopt" train --task fmnist-cnn --opt sgd --steps 1 --batch 65536) >/dev/null 2>"$tmp/err"; code=$?
  { [ $code -eq 1 ] && grep -q "^lopt train: out of memory" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; } \
    && echo "ok   out of memory: exit 1, one line" || { echo "FAIL: out of memory: exit $code $(cat "$tmp/err")"; fail=1; }
else echo "skip out-of-memory test under AddressSanitizer"; fi

# 11. a run that can learn nothing (every outer loss clipped) says so and exits 1
expect 1 "learned nothing: every outer loss was clipped at --loss-clip 10" -- meta-train --task quadratic \
  --estimator es --K 5 --samples 2 --outer-steps 3 --out "$tmp/q.lopt"
grep -q "warning: every outer loss of outer step 1 is at --loss-clip 10" "$tmp/err" \
  || { echo "FAIL: no early warning of the clipped losses"; fail=1; }

# 12. --out: empty refused; a long path keeps its checkpoint name
expect 2 "--out needs a file name" -- "${mt[@]}" --outer-steps 1 --out ''
long="$tmp/$(printf 'd%.0s' $(seq 190))/$(printf 'e%.0s' $(seq 190))"
mkdir -p "$long"
out="$long/$(printf 'f%.0s' $(seq $((597 - ${#long} - 6)))).lopt"
expect 0 "meta-train: 1 outer steps" -- "${mt[@]}" --outer-steps 1 --out "$out"
check "a ${#out}-character --out has its checkpoint at OUT.ckpt" test -f "$out.ckpt"

# 13. the small ones
expect 2 "--batch must be in 1..65536" -- train --task quadratic --opt sgd --steps 5 --batch 0
expect 2 "bad value for --steps: ' 5'" -- train --task quadratic --opt sgd --steps ' 5'
expect 2 "bad value for --lr: ' 0.1'" -- train --task quadratic --opt sgd --steps 5 --lr ' 0.1'
expect 2 "--lr applies to --like sgd.momentum" -- init-lopt --like random --lr 5 --out "$tmp/r.lopt"
expect 2 "--beta applies to --like momentum" -- init-lopt --like sgd --beta 0.9 --out "$tmp/r.lopt"
# a .lopt whose step multiplier is 1e38 (CRC repaired) is refused, not trained with
/usr/bin/python3 - "$tmp/l1.lopt" "$tmp/big.lopt" <<'EOF' || fail=1
import struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read())
off = 20 + 4 + 4 * 5 + 4 + 4 * 9 + 4 + 4   # the paper preset: step_mult
assert abs(struct.unpack_from("<f", b, off)[0] - 1e-3) < 1e-9
struct.pack_into("<f", b, off, 1e38)
struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xffffffff)
open(sys.argv[2], "wb").write(b)
EOF
expect 1 "step multiplier 1e\+38 outside \(0, 1\]" -- train --task quadratic --opt "learned:$tmp/big.lopt" --steps 5
grep -q "LOPT_FMNIST_DIR" docs/guide.md || { echo "FAIL: LOPT_FMNIST_DIR undocumented"; fail=1; }
check "no temp file anywhere" no_temps "$tmp"
exit $fail
