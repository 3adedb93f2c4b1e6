#!/usr/bin/env bash
# Outer steps per second of `lopt meta-train` against MPI ranks, and what the
# ranks' communication costs per outer step (docs/scale-out.md, "Measured").
#   bench/mpi_scale.sh [BUILD] [ROUNDS] [STEPS]
# Set-ups, interleaved round by round so a busy machine slows all of them alike:
#   1x1  one rank, one thread          (the unit of work)
#   1x2  one rank, two OpenMP threads  (one machine's best without MPI)
#   2x1  two ranks, one thread each, bound to a core each
# for the merged estimator (rp + es: the rp sample travels, 40 + 4 np bytes per
# sample) and es (40 bytes per sample), S = 8 samples, K = 20, fmnist8-mlp.
# "comm" is what meta-train reports on rank 0: seconds in collectives per outer step,
# waiting for the slowest rank included (LOPT_MPI_PROFILE=1 would split off the wait
# with a barrier, whose busy polling costs CPU on a busy machine: not used here).
# Steps per second = outer steps / the log's time_s (the steps' wall-clock).
# CPU seconds per outer step (user + sys of all ranks, from /usr/bin/time, start-up
# subtracted with a 0-step run of each set-up) show what N ranks cost in work, which
# a busy machine blurs less than the wall-clock.
# Prints one line per run, then the medians. Only 1 and 2 ranks mean anything on a
# 2-core machine; more (--oversubscribe) tests correctness, not speed.
# Then bench/dist_bench.c times that collective alone (S = 8, 32, 128 records), over
# shared memory (Open MPI's vader) and over TCP on loopback (a stand-in for a
# network: latency of the kernel's TCP stack, not of a wire).
set -u
build=${1:-build}
rounds=${2:-3}
steps=${3:-20}
lopt=$(realpath "$build/lopt")
command -v mpirun >/dev/null || { echo "mpirun not found (scripts/deps.sh)"; exit 1; }
ldd "$lopt" | grep -q libmpi || { echo "$lopt has no MPI (make MPI=1)"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one meta-train run: setup estimator outer-steps output-prefix; its CPU seconds in $out.cpu
meta() {
  local setup=$1 est=$2 n=$3 out=$4 np threads
  case $setup in 1x1) np=1 threads=1 ;; 1x2) np=1 threads=2 ;; 2x1) np=2 threads=1 ;; esac
  /usr/bin/time -f "%U %S" -o "$out.time" \
    mpirun --bind-to "$([ $np -gt 1 ] && echo core || echo none)" -np $np \
    "$lopt" meta-train --task fmnist8-mlp --estimator "$est" --samples 8 --K 20 --horizon 1000 \
    --seed 1 --outer-steps "$n" --threads $threads --checkpoint-every 100000 \
    --out "$out.lopt" --log "$out.csv" >/dev/null 2>"$out.err" || { echo "run failed: $setup $est"; cat "$out.err"; exit 1; }
  awk '{ print $1 + $2 }' "$out.time" >"$out.cpu"
}

run() {   # setup estimator round
  local setup=$1 est=$2
  local out="$tmp/$setup-$est-$3"
  [ -f "$tmp/$setup-$est-0.cpu" ] || meta "$setup" "$est" 0 "$tmp/$setup-$est-0"
  meta "$setup" "$est" "$steps" "$out"
  local t comm bytes cpu
  t=$(tail -1 "$out.csv" | cut -d, -f13)
  comm=$(grep -o 'rank 0: [0-9.]* ms' "$out.err" | grep -o '[0-9.]* ms' | cut -d' ' -f1)
  bytes=$(grep -o '[0-9]* bytes received' "$out.err" | cut -d' ' -f1)
  cpu=$(awk -v a="$(cat "$out.cpu")" -v b="$(cat "$tmp/$setup-$est-0.cpu")" -v s="$steps" \
        'BEGIN { printf "%.3f", (a - b) / s }')
  printf "%-4s %-7s round %d  %6.2f outer steps/s  comm %s ms  %s bytes/step  cpu %s s/step\n" \
    "$setup" "$est" "$3" "$(awk -v s="$steps" -v t="$t" 'BEGIN { print s / t }')" \
    "${comm:--}" "${bytes:--}" "$cpu" | tee -a "$tmp/all.txt"
}

echo "# $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $steps outer steps per run"
for r in $(seq "$rounds"); do
  for est in merged es; do
    for setup in 1x1 1x2 2x1; do run $setup $est "$r"; done
  done
done
echo "# medians over $rounds rounds"
for est in merged es; do
  for setup in 1x1 1x2 2x1; do
    grep "^$setup *$est " "$tmp/all.txt" | awk -v s=$setup -v e=$est '
      { v[NR] = $5; c[NR] = $9; b = $11; u[NR] = $14 }
      function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                        if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                                      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      END { printf "%-4s %-7s %6.2f outer steps/s  comm %s ms  %s bytes/step  cpu %.3f s/step\n",
            s, e, med(v, NR), c[1] == "-" ? "-" : med(c, NR), b, med(u, NR) }'
  done
done

echo "# the per-step allgather alone (bench/dist_bench.c), 2 ranks"
mpicc -std=c11 -O2 -Isrc -Iinclude bench/dist_bench.c "$build/src/core/dist_mpi.o" "$build/liblopt.a" -o "$tmp/dist_bench" -lm
for btl in self,vader self,tcp; do
  echo "# --mca btl $btl"
  mpirun --bind-to core -np 2 --mca btl $btl "$tmp/dist_bench" 500
done
