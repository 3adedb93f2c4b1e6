"""paired.py CURVES.csv A B [B ...]: final validation loss of A minus each B, paired by seed
(mean, standard error of the paired difference, difference / SE, seeds where A is lower)."""
import csv, math, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
final = {}
for r in rows:
    k = (r['optimizer'], r['seed'])
    if k not in final or int(r['step']) > final[k][0]:
        final[k] = (int(r['step']), float(r['valid_loss']))
a = sys.argv[2]
seeds = sorted({s for (o, s) in final if o == a})
va = [final[(a, s)][1] for s in seeds]
print(f"{a}: {st.mean(va):.4f} +- {st.stdev(va) / math.sqrt(len(va)):.4f} (SE, {len(va)} seeds)")
for b in sys.argv[3:]:
    d = [final[(a, s)][1] - final[(b, s)][1] for s in seeds]
    se = st.stdev(d) / math.sqrt(len(d))
    vb = [final[(b, s)][1] for s in seeds]
    print(f"  - {b} ({st.mean(vb):.4f} +- {st.stdev(vb) / math.sqrt(len(vb)):.4f}): "
          f"{st.mean(d):+.4f} +- {se:.4f} = {st.mean(d) / se:+.1f} SE, lower on "
          f"{sum(x < 0 for x in d)} of {len(d)}")
