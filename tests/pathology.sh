#!/usr/bin/env bash
# lopt pathology (docs/design.md sections 1.4 and 4): each study at tiny sizes writes
# well-formed outputs (CSV headers and row counts, JSON that parses, PNGs with a
# valid signature and IHDR, SVGs with the expected lines, no temp files) and exits 0;
# bad usage exits 2 with a reason and the usage line; runtime failures exit 1.
# One assertion per study that could fail (fixed seeds, wide margins: the chaotic
# numbers differ between builds in their low bits, and chaos amplifies that):
#  - surface: the K=100 line through theta is much rougher than the K=1 line;
#  - gradvar: in the chaotic setting (fmnist8-mlp, normalised SGD at step 0.03) rp's
#    summed variance grows by orders of magnitude from K=1 to K=60 while es's grows
#    far less, and the merge leans on rp at K=1;
#  - bias: the lr meta-learned with K=1 is below the full-horizon optimum (greedy),
#    and with K=H the meta-learning finds that optimum.
set -u
build=${1:-build}
lopt="$build/lopt"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

source "$(dirname "$0")/lib.bash"

# usage: exit 2 before anything slow
expect 0 "usage: lopt pathology surface\|gradvar\|bias" -- pathology --help
expect 0 "usage: lopt pathology surface" -- pathology surface --help
expect 0 "--horizon" -- pathology bias --help
expect 2 "missing study" -- pathology
expect 2 "unknown study 'curvature'" -- pathology curvature
expect 2 "unknown option '--horizon'" -- pathology surface --horizon 10
expect 2 "malformed --Ks '1,,3'" -- pathology gradvar --Ks 1,,3
expect 2 "malformed --Ks '0,3'" -- pathology gradvar --Ks 0,3
expect 2 "unroll length 3 given twice" -- pathology gradvar --Ks 3,3 --out "$tmp/x"
expect 2 "--samples must be in 2" -- pathology gradvar --samples 1
expect 2 "--samples must be even" -- pathology surface --samples 3
expect 2 "--points must be in 3" -- pathology surface --points 2
expect 2 "--grid must be 0" -- pathology surface --grid 1
expect 2 "truncation 300 is longer than the horizon 100" -- pathology bias --horizon 100 --Ks 1,300
expect 2 "malformed --lr-range" -- pathology bias --lr-range 1:0.1
expect 2 "--outer-loss must be train or valid" -- pathology surface --outer-loss test
expect 2 "not with --lopt" -- pathology gradvar --lopt x.lopt --step-mult 0.1
expect 2 "unknown task 'nope'" -- pathology bias --task nope
expect 2 "usage: lopt pathology bias" -- pathology bias --seed -4
# runtime failures: exit 1 with a reason
expect 1 "cannot open .*missing.lopt" -- pathology surface --lopt "$tmp/missing.lopt"
touch "$tmp/afile"
expect 1 "cannot create directory" -- pathology bias --horizon 10 --Ks 1,10 --instances 1 \
  --grid-points 3 --outer-steps 2 --out "$tmp/afile/sub"

# the three studies, tiny
run() {
  local name=$1; shift
  "$lopt" pathology "$@" >"$tmp/$name.table" 2>"$tmp/$name.progress"
  local code=$?
  if [ $code -ne 0 ]; then echo "FAIL: pathology $* -> $code"; tail -3 "$tmp/$name.progress"; fail=1
  else echo "ok   pathology $* -> 0"; fi
}
run surface surface --Ks 1,100 --points 15 --radius 0.3 --samples 2 --grid 4 --K2d 5,10 \
  --out "$tmp/s/nested"
run gradvar gradvar --Ks 1,60 --samples 3 --out "$tmp/g"
run bias bias --instances 2 --horizon 100 --Ks 1,100 --grid-points 21 --outer-steps 150 \
  --outer-lr 0.1 --out "$tmp/b"
grep -q "^gradvar .*K=60 sample" "$tmp/gradvar.progress" \
  || { echo "FAIL: gradvar progress does not say what runs"; head -3 "$tmp/gradvar.progress"; fail=1; }
for d in s/nested g b; do
  ls "$tmp/$d" | grep -q "\.tmp\." && { echo "FAIL: temp file left in $d"; fail=1; }
done

"$py" - "$tmp" <<'EOF' || fail=1
import csv, json, math, struct, sys, zlib
tmp = sys.argv[1]
bad = 0
def check(cond, what):
    global bad
    print(("ok   " if cond else "FAIL: ") + what)
    bad += not cond

def png(path, size=None):
    b = open(path, "rb").read()
    n, typ = struct.unpack(">I4s", b[8:16])
    w, h = struct.unpack(">II", b[16:24])
    ok = (b[:8] == b"\x89PNG\r\n\x1a\n" and n == 13 and typ == b"IHDR"
          and struct.unpack(">I", b[29:33])[0] == zlib.crc32(b[12:29])
          and b[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82" and (size is None or (w, h) == size))
    check(ok, path.split("/", 3)[-1] + ": PNG signature, IHDR, IEND")

def svg(path, lines):
    s = open(path).read()
    check("<svg" in s and s.rstrip().endswith("</svg>") and s.count('class="line"') == lines,
          path.split("/", 3)[-1] + ": SVG with %d lines" % lines)

# surface
d = tmp + "/s/nested"
rows = list(csv.reader(open(d + "/surface.csv")))
check(rows[0] == ["K", "a", "loss", "smoothed_loss"], "surface.csv header")
check(len(rows) == 1 + 2 * 15, "surface.csv: 2 K x 15 points")
a = [float(r[1]) for r in rows[1:16]]
check(abs(a[0] + 0.3) < 1e-9 and abs(a[-1] - 0.3) < 1e-9 and abs(a[7]) < 1e-9, "a spans [-0.3, 0.3]")
check(all(math.isfinite(float(r[2])) for r in rows[1:]), "surface losses finite")
sm = [float(r[3]) for r in rows[1:]]
check(sum(math.isfinite(v) for v in sm) == 2 * 8, "smoothed at every 2nd point")
r2 = list(csv.reader(open(d + "/surface2d.csv")))
check(r2[0] == ["K", "a", "b", "loss"] and len(r2) == 1 + 2 * 16 and {r[0] for r in r2[1:]} == {"5", "10"},
      "surface2d.csv: 2 slices of 4 x 4")
s = json.load(open(d + "/summary.json"))
check(s["study"] == "surface" and s["task"] == "fmnist8-mlp" and s["K2d"] == [5, 10]
      and [p["K"] for p in s["per_K"]] == [1, 100], "surface summary.json")
r1, r100 = s["per_K"][0]["roughness"], s["per_K"][1]["roughness"]
check(r100 > 2 * r1, "the K=100 surface is rougher than K=1 (roughness %.3g vs %.3g)" % (r100, r1))
for p in ("surface_K1", "surface_K100"):
    png(d + "/" + p + ".png", (960, 600)); svg(d + "/" + p + ".svg", 2)
png(d + "/surface_all.png", (960, 600)); svg(d + "/surface_all.svg", 2)
for k in (5, 10):
    png(d + "/surface2d_K%d.png" % k)
    h = open(d + "/surface2d_K%d.svg" % k).read()
    check(h.count('class="cell"') == 16 and h.rstrip().endswith("</svg>"), "surface2d_K%d.svg: 16 cells" % k)

# gradvar
d = tmp + "/g"
rows = list(csv.DictReader(open(d + "/gradvar.csv")))
check(list(rows[0].keys()) == ("K,samples,sigma,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,"
      "rp_sample_norm,es_sample_norm,diverged,rp_nonfinite,tape_mb,time_s").split(","), "gradvar.csv header")
check([int(r["K"]) for r in rows] == [1, 60], "gradvar.csv rows K=1, 60")
v = {int(r["K"]): r for r in rows}
rp = float(v[60]["v_rp"]) / float(v[1]["v_rp"])
es = float(v[60]["v_es"]) / float(v[1]["v_es"])
check(rp > 1e4 and rp > 100 * es,
      "rp variance grows %.3g x from K=1 to K=60, es %.3g x" % (rp, es))
check(float(v[1]["w_es"]) < 0.1, "the merge leans on rp at K=1 (es weight %s)" % v[1]["w_es"])
s = json.load(open(d + "/summary.json"))
check(s["study"] == "gradvar" and s["samples"] == 3 and len(s["rows"]) == 2, "gradvar summary.json")
for p, lines in (("variance", 2), ("norm", 4), ("es_weight", 1)):
    png(d + "/" + p + ".png", (960, 600)); svg(d + "/" + p + ".svg", lines)

# bias
d = tmp + "/b"
rows = list(csv.DictReader(open(d + "/bias.csv")))
check([int(r["K"]) for r in rows] == [1, 100], "bias.csv rows K=1, 100")
s = json.load(open(d + "/summary.json"))
opt = s["optimum"]["lr"]
lr1, lrH = float(rows[0]["lr"]), float(rows[1]["lr"])
check(lr1 < 0.97 * opt, "K=1 meta-learns a smaller lr than the full-horizon optimum (%.4g vs %.4g)" % (lr1, opt))
check(abs(lrH / opt - 1) < 0.03, "K=H meta-learning finds the full-horizon optimum (%.4g vs %.4g)" % (lrH, opt))
check(float(rows[0]["full_horizon_mean_loss"]) > s["optimum"]["full_horizon_mean_loss"],
      "K=1's lr has a worse full-horizon loss")
g = list(csv.reader(open(d + "/grid.csv")))
check(g[0] == ["lr", "full_horizon_mean_loss", "final_loss", "metagrad_K1", "metagrad_K100"]
      and len(g) == 22, "grid.csv header and 21 rows")
o = list(csv.reader(open(d + "/outer.csv")))
check(o[0] == ["K", "outer_step", "lr"] and len(o) == 1 + 2 * 151, "outer.csv: 2 K x 151 rows")
for p, lines in (("lr_vs_K", 2), ("loss_vs_K", 2), ("loss_vs_lr", 2), ("metagrad_vs_lr", 2), ("outer_lr", 2)):
    png(d + "/" + p + ".png", (960, 600)); svg(d + "/" + p + ".svg", lines)
sys.exit(1 if bad else 0)
EOF
exit $fail
