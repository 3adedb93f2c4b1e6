#!/usr/bin/env bash
# lopt compare (docs/design.md sections 4 and 6): a fast comparison on fmnist8-mlp (an
# untrained learned optimizer against tuned adam and momentum) writes well-formed
# outputs - CSV headers and row counts, tuning seeds disjoint from test seeds, JSON
# that parses and agrees with the printed table, PNGs with a valid signature and
# IHDR, SVGs with one line per optimizer, no temp files; an lr at the end of its
# grid is flagged; bad usage exits 2 with a reason and the usage line; runtime
# failures exit 1 with a reason.
set -u
build=${1:-build}
lopt="$build/lopt"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

source "$(dirname "$0")/lib.bash"

"$lopt" init-lopt --out "$tmp/u.lopt" >/dev/null || { echo "FAIL: init-lopt"; exit 1; }

# usage errors: exit 2 before any data is loaded
q=(--task fmnist8-mlp --steps 10)
expect 0 "usage: lopt compare" -- compare --help
expect 2 "missing --task" -- compare --steps 10
expect 2 "unknown baseline 'lion'" -- compare "${q[@]}" --baselines adam,lion
expect 2 "baseline 'adam' given twice" -- compare "${q[@]}" --baselines adam,adam
expect 2 "empty name in --baselines" -- compare "${q[@]}" --baselines adam,
expect 2 "malformed --seeds" -- compare "${q[@]}" --seeds 1000,,1001
expect 2 "malformed --seeds" -- compare "${q[@]}" --seeds 1e3
expect 2 "malformed --seeds" -- compare "${q[@]}" --seeds -1
expect 2 "test seed 1000 given twice" -- compare "${q[@]}" --seeds 1000,1000
expect 2 "tuning and test seeds must be disjoint" -- compare "${q[@]}" --seeds 1000,10000
expect 2 "disjoint" -- compare "${q[@]}" --seeds 10002 --tune-seeds 3
expect 2 "--steps must be positive" -- compare --task fmnist8-mlp --steps 0
expect 2 "usage: lopt compare" -- compare --task fmnist8-mlp --steps -3
expect 2 "--grid-points must be in" -- compare "${q[@]}" --grid-points 1
expect 2 "--tune-seeds must be in" -- compare "${q[@]}" --tune-seeds 0
expect 2 "malformed --lr-range" -- compare "${q[@]}" --lr-range 1e-1:1e-3
expect 2 "unknown task 'nope'" -- compare --task nope --steps 10
# scheduled baselines NAME:SCHEDULE and --warmup
expect 0 "--baselines S +comma-separated NAME or NAME:SCHEDULE" -- compare --help
expect 0 "--warmup N +linear warm-up steps of the NAME:SCHEDULE baselines" -- compare --help
expect 2 "unknown schedule 'step' in baseline 'adam:step'" -- compare "${q[@]}" --baselines adam:step
grep -q "^usage: lopt compare" "$tmp/err" || { echo "FAIL: no usage line for a bad schedule"; fail=1; }
expect 2 "unknown baseline 'lion:cosine'" -- compare "${q[@]}" --baselines adam,lion:cosine
expect 2 "baseline 'adam:cosine' given twice" -- compare "${q[@]}" --baselines adam:cosine,adam:cosine
expect 2 "baselines 'adam' and 'adam:const' are the same runs" -- compare "${q[@]}" \
  --baselines adam,adam:const
expect 2 "--warmup applies to NAME:SCHEDULE baselines" -- compare "${q[@]}" --baselines adam --warmup 5
expect 2 "--warmup must be non-negative" -- compare "${q[@]}" --baselines adam:cosine --warmup -2
expect 2 "baseline adam:cosine: warm-up \(10 steps\) must be shorter than the run \(10 steps\)" -- \
  compare "${q[@]}" --baselines adam,adam:cosine --warmup 10
expect 2 "at most 11 baselines" -- compare "${q[@]}" --lopt "$tmp/u.lopt" \
  --baselines adam,adam:cosine,adam:linear,rmsprop,rmsprop:cosine,momentum,momentum:cosine,sgd,sgd:cosine,nesterov,nesterov:cosine,adam:const
# further learned rows: --lopt-extra NAME:FILE
expect 2 "malformed --lopt-extra 'warm' \(want NAME:FILE" -- compare "${q[@]}" --lopt-extra warm
expect 2 "malformed --lopt-extra ':x.lopt'" -- compare "${q[@]}" --lopt-extra :x.lopt
expect 2 "row name 'adam' is taken" -- compare "${q[@]}" --baselines adam --lopt-extra "adam:$tmp/u.lopt"
expect 2 "row name 'learned' is taken" -- compare "${q[@]}" --lopt-extra "learned:$tmp/u.lopt"
expect 2 "row name 'w' is taken" -- compare "${q[@]}" --lopt-extra "w:$tmp/u.lopt,w:$tmp/u.lopt"
expect 2 "learned optimizer name 'a b'" -- compare "${q[@]}" --lopt-extra "a b:$tmp/u.lopt"
expect 2 "at most 3 further learned optimizers" -- compare "${q[@]}" --lopt-extra a:f,b:f,c:f,d:f
# runtime failures: exit 1 with a reason
expect 1 "cannot open .*missing.lopt" -- compare "${q[@]}" --lopt "$tmp/missing.lopt"
expect 1 "cannot open .*missing.lopt" -- compare "${q[@]}" --lopt-extra "w:$tmp/missing.lopt"
expect 1 "sgd diverged at every learning rate of its grid" -- compare --task quadratic --steps 20 \
  --baselines sgd --seeds 1 --grid-points 2 --lr-range 1e3:1e4 --out "$tmp/div"
touch "$tmp/afile"
expect 1 "cannot create directory" -- compare --task quadratic --steps 5 --baselines sgd --seeds 1 --grid-points 2 --out "$tmp/afile/sub"

# the fast comparison
out="$tmp/cmp/nested"
"$lopt" compare --task fmnist8-mlp --lopt "$tmp/u.lopt" --steps 60 --grid-points 3 \
  --seeds 1000,1001 --baselines adam,momentum --out "$out" >"$tmp/table" 2>"$tmp/progress"
code=$?
if [ $code -ne 0 ]; then echo "FAIL: compare exit $code"; cat "$tmp/progress" | tail -5; exit 1; fi
echo "ok   compare fmnist8-mlp (60 steps, 3-point grids, 2 seeds) -> 0"
for f in curves.csv tuning.csv summary.json summary.md valid_loss_vs_step.svg valid_loss_vs_step.png \
         valid_loss_vs_time.svg valid_loss_vs_time.png train_loss_vs_step.svg train_loss_vs_step.png \
         train_valid_loss_vs_step.svg train_valid_loss_vs_step.png; do
  [ -s "$out/$f" ] || { echo "FAIL: $f missing or empty"; fail=1; }
done
ls "$out" | grep -q "\.tmp\." && { echo "FAIL: temp file left behind"; fail=1; }
grep -qE "tuning adam lr 0.0001 seed 10000 \(run [0-9]+ of 12\)" "$tmp/progress" \
  || { echo "FAIL: progress does not say what runs"; head -3 "$tmp/progress"; fail=1; }

# tuning on parallel workers (the run above: --jobs defaults to every core) picks
# what one worker picks: the same tuning losses and the same test curves
"$lopt" compare --task fmnist8-mlp --lopt "$tmp/u.lopt" --steps 60 --grid-points 3 \
  --seeds 1000,1001 --baselines adam,momentum --jobs 1 --out "$tmp/serial" >/dev/null 2>&1 \
  || { echo "FAIL: compare --jobs 1"; fail=1; }
if cmp -s "$out/tuning.csv" "$tmp/serial/tuning.csv" &&
   cmp -s <(cut -d, -f1-6 "$out/curves.csv") <(cut -d, -f1-6 "$tmp/serial/curves.csv"); then
  echo "ok   --jobs 1 and parallel tuning give the same tuning.csv and curves"
else
  echo "FAIL: parallel tuning differs from --jobs 1"; diff "$out/tuning.csv" "$tmp/serial/tuning.csv" | head -5; fail=1
fi
expect 2 "--jobs must be in" -- compare "${q[@]}" --jobs -1

# CSVs, JSON, table, PNG, SVG checked together in Python
"$py" - "$out" "$tmp/table" <<'EOF' || fail=1
import csv, json, math, struct, sys, zlib
out, table = sys.argv[1], open(sys.argv[2]).read()
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL: ") + what)
    bad += not cond

rows = list(csv.reader(open(out + "/curves.csv")))
check(rows[0] == "optimizer,seed,step,train_loss,valid_loss,valid_acc,time_s".split(","), "curves.csv header")
body = rows[1:]
check(len(body) == 3 * 2 * 21, "curves.csv: 3 optimizers x 2 seeds x 21 rows (%d)" % len(body))
check({r[0] for r in body} == {"learned", "adam", "momentum"}, "curves.csv optimizers")
check({r[1] for r in body} == {"1000", "1001"}, "curves.csv holds the test seeds only")
check(all(float(r[4]) > 0 for r in body), "curves.csv valid losses parse")
tun = list(csv.reader(open(out + "/tuning.csv")))
check(tun[0] == ["optimizer", "lr", "seed", "final_valid_loss"], "tuning.csv header")
check(len(tun) == 1 + 2 * 3, "tuning.csv: 2 baselines x 3 lrs x 1 seed")
check({r[2] for r in tun[1:]} == {"10000"}, "tuning on seed 10000 only")
adam_lrs = sorted(float(r[1]) for r in tun[1:] if r[0] == "adam")
check(all(abs(a - b) / b < 1e-5 for a, b in zip(adam_lrs, [1e-4, math.sqrt(1e-5), 1e-1])),
      "adam grid 1e-4 .. 1e-1 log-spaced: %s" % adam_lrs)

s = json.load(open(out + "/summary.json"))
check(s["task"] == "fmnist8-mlp" and s["steps"] == 60 and s["seeds"] == [1000, 1001]
      and s["tune_seeds"] == [10000], "summary.json header fields")
names = [o["name"] for o in s["optimizers"]]
check(names == ["learned", "adam", "momentum"], "summary.json optimizers %s" % names)
check(s["best_baseline"] in ("adam", "momentum"), "best baseline %s" % s["best_baseline"])
for o in s["optimizers"]:
    f = o["final"]
    check(all(k in f for k in ("train_loss", "valid_loss", "valid_acc", "test_loss", "test_acc", "time_s"))
          and all(set(f[k]) == {"mean", "std", "min", "max"} for k in f), o["name"] + ": final stats")
    check(len(o["mean_curve"]["step"]) == 21, o["name"] + ": mean curve of 21 rows")
    if o["learned"]:
        continue
    lr = o["lr"]
    check(lr in o["lr_grid"], o["name"] + ": tuned lr on its grid")
    k = o["lr_grid"].index(lr)
    check(o["lr_grid_mean_final_valid_loss"][k] == min(v for v in o["lr_grid_mean_final_valid_loss"] if v is not None),
          o["name"] + ": tuned lr has the lowest tuning loss")
    cell = "| %s%s | %s" % (o["name"], " (best)" if o["name"] == s["best_baseline"] else "", format(lr, ".3g"))
    check(cell in table, o["name"] + ": tuned lr %s in the printed table" % format(lr, ".3g"))
best = next(o for o in s["optimizers"] if o["name"] == s["best_baseline"])
check(abs(s["target_valid_loss"] - best["final"]["valid_loss"]["mean"]) < 1e-9, "target = best's final valid loss")
check(best["reach_target"]["reached"] and best["reach_target"]["speedup_steps"] >= 1.0, "best reaches its own target")
check("| optimizer | lr | train loss | valid loss |" in table and "speedup (steps)" in table, "table header on stdout")
check(table.startswith(open(out + "/summary.md").read()), "stdout table = summary.md")

for p in ("valid_loss_vs_step", "valid_loss_vs_time", "train_loss_vs_step"):
    b = open("%s/%s.png" % (out, p), "rb").read()
    check(b[:8] == b"\x89PNG\r\n\x1a\n", p + ".png signature")
    n, typ = struct.unpack(">I4s", b[8:16])
    w, h = struct.unpack(">II", b[16:24])
    check(n == 13 and typ == b"IHDR" and (w, h) == (960, 600), p + ".png IHDR 960x600")
    check(struct.unpack(">I", b[29:33])[0] == zlib.crc32(b[12:29]), p + ".png IHDR CRC")
    check(b[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", p + ".png ends with IEND")
    svg = open("%s/%s.svg" % (out, p)).read()
    check("<svg" in svg and svg.count('class="line"') == 3 and svg.rstrip().endswith("</svg>"),
          p + ".svg: one line per optimizer")
# training and validation side by side: two 800x600 panels, each a line per optimizer
b = open(out + "/train_valid_loss_vs_step.png", "rb").read()
check(b[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", b[16:24]) == (1600, 600),
      "train_valid_loss_vs_step.png: 1600x600")
svg = open(out + "/train_valid_loss_vs_step.svg").read()
check(svg.count("<svg ") == 3 and svg.count('class="line"') == 6 and "training loss" in svg
      and "validation loss" in svg, "train_valid_loss_vs_step.svg: 2 panels x 3 lines")
sys.exit(1 if bad else 0)
EOF

# scheduled baselines: each NAME:SCHEDULE is its own tuned row; here (fmnist8-mlp, 100
# steps) cosine-decayed Adam beats constant-lr Adam, so it is the target, and the
# learned optimizers are also measured against tuned constant-lr adam; a second
# learned optimizer (a hand-designed warm start) is a row of its own
sc="$tmp/sched"
"$lopt" init-lopt --like momentum --lr 0.003 --out "$tmp/m.lopt" >/dev/null || fail=1
"$lopt" compare --task fmnist8-mlp --lopt "$tmp/u.lopt" --lopt-extra "warm:$tmp/m.lopt" \
  --steps 100 --grid-points 3 \
  --lr-range 3e-3:3e-2 --seeds 1000,1001 --baselines adam:cosine,adam,momentum:linear \
  --warmup 10 --out "$sc" >"$tmp/stable" 2>/dev/null || { echo "FAIL: scheduled compare"; fail=1; }
"$py" - "$sc" "$tmp/stable" <<'EOF' || fail=1
import csv, json, sys
out, table = sys.argv[1], open(sys.argv[2]).read()
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL: ") + what)
    bad += not cond
md = open(out + "/summary.md").read()
s = json.load(open(out + "/summary.json"))
names = [o["name"] for o in s["optimizers"]]
check(names == ["learned", "warm", "adam:cosine", "adam", "momentum:linear"], "rows %s" % names)
check(s["optimizers"][1]["learned"] and s["optimizers"][1]["lopt_file"].endswith("/m.lopt")
      and s["optimizers"][0]["lopt_file"].endswith("/u.lopt"), "summary.json: each learned row's file")
check(s["optimizers"][0]["final"]["valid_loss"] != s["optimizers"][1]["final"]["valid_loss"],
      "the warm row runs its own optimizer")
check("; row warm: " in md and "| warm | (learned) |" in md, "summary.md: the warm row")
curves = list(csv.reader(open(out + "/curves.csv")))[1:]
check(sum(r[0] == "warm" for r in curves) == 2 * 21, "curves.csv: the warm row, 2 seeds x 21 rows")
check(open(out + "/valid_loss_vs_step.svg").read().count('class="line"') == 5, "plot: 5 lines")
check("| adam:cosine" in md and "| momentum:linear" in md, "scheduled rows in summary.md")
check("adam:cosine (warm-up 10), momentum:linear (warm-up 10)" in md, "summary.md names the schedules and warm-ups")
tun = list(csv.reader(open(out + "/tuning.csv")))[1:]
check(sorted({r[0] for r in tun}) == ["adam", "adam:cosine", "momentum:linear"] and len(tun) == 9,
      "tuning.csv: 3 rows each for adam:cosine, adam, momentum:linear")
by = {(r[0], r[1]): float(r[3]) for r in tun}
check(all(by[("adam:cosine", lr)] != by[("adam", lr)] for (n, lr) in by if n == "adam"),
      "adam:cosine's tuning runs differ from adam's at every lr (the schedule is applied)")
o = {x["name"]: x for x in s["optimizers"]}
check(o["adam:cosine"]["optimizer"] == "adam" and o["adam:cosine"]["schedule"] == "cosine"
      and o["adam:cosine"]["warmup"] == 10 and o["adam"]["schedule"] == "const"
      and o["adam"]["warmup"] == 0 and o["momentum:linear"]["schedule"] == "linear",
      "summary.json: optimizer, schedule, warmup per baseline")
finals = {n: x["final"]["valid_loss"]["mean"] for n, x in o.items() if not x["learned"]}
check(s["best_baseline"] == min(finals, key=finals.get), "best = lowest final valid loss among all baselines")
check(s["best_baseline"] == "adam:cosine", "cosine Adam is the strongest here (%s)" % s["best_baseline"])
check("strongest tuned baseline's final mean validation loss, adam:cosine" in md
      and "| adam:cosine (best) |" in md, "summary.md names the strongest baseline")
check(abs(s["adam_target_valid_loss"] - finals["adam"]) < 1e-9, "adam target = constant-lr adam's final loss")
check(all("reach_adam" in x for x in s["optimizers"]), "reach_adam for every row")
a = o["adam"]["reach_adam"]
check(a["reached"] and a["speedup_steps"] >= 1.0, "adam reaches its own final loss")
check(o["adam:cosine"]["reach_adam"]["reached"], "the strongest baseline reaches adam's loss")
check("Against tuned constant-lr adam" in md and "| learned | " in md.split("Against")[1],
      "summary.md: the steps to constant-lr adam's loss, the learned row included")
check(table.startswith(md), "stdout = summary.md")
sys.exit(1 if bad else 0)
EOF

# an lr at the edge of its grid is flagged (a grid far below adam's good range)
expect 0 "WARNING: adam's tuned lr .* high end of its grid" -- compare --task quadratic --steps 20 \
  --baselines adam --seeds 1 --grid-points 2 --lr-range 1e-6:2e-6 --out "$tmp/edge"
grep -q "grid edge" "$tmp/out" || { echo "FAIL: no grid-edge mark in the table"; fail=1; }
exit $fail
