#!/usr/bin/env python3
"""paired.py - the table of docs/results/fmnist8-mlp-outer/README.md from compare's curves.csv.

Final (last-row) train and validation loss per optimizer: mean and standard error
(std / sqrt(n)) over the test seeds, and each paired difference A - B over the same
seeds with its standard error and A - B in standard errors.

    python3 paired.py compare/curves.csv valid-outer train-outer [more rows ...]
"""
import csv
import math
import sys


def stats(v):
    n = len(v)
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return m, sd / math.sqrt(n)


def main():
    path, names = sys.argv[1], sys.argv[2:]
    last = {}   # (optimizer, seed) -> the row with the largest step
    for r in csv.DictReader(open(path)):
        k = (r["optimizer"], int(r["seed"]))
        if k not in last or int(r["step"]) > int(last[k]["step"]):
            last[k] = r
    seeds = sorted({s for (o, s) in last if o == names[0]})
    print("seeds:", ",".join(map(str, seeds)), " step:", last[(names[0], seeds[0])]["step"])
    print("| optimizer | final train loss | final valid loss |")
    print("|---|---|---|")
    allnames = sorted({o for (o, s) in last}, key=lambda o: (o not in names, names.index(o) if o in names else 0, o))
    for o in allnames:
        cols = []
        for c in ("train_loss", "valid_loss"):
            m, se = stats([float(last[(o, s)][c]) for s in seeds])
            cols.append("%.4f ± %.4f" % (m, se))
        print("| %s | %s | %s |" % (o, cols[0], cols[1]))
    print()
    print("| paired difference (over the same seeds) | train loss | valid loss |")
    print("|---|---|---|")
    for i in range(0, len(names) - 1, 2):
        a, b = names[i], names[i + 1]
        cols = []
        for c in ("train_loss", "valid_loss"):
            d = [float(last[(a, s)][c]) - float(last[(b, s)][c]) for s in seeds]
            m, se = stats(d)
            wins = sum(x < 0 for x in d)
            cols.append("%+.4f ± %.4f (%+.1f SE; %s lower on %d of %d seeds)" % (m, se, m / se, a, wins, len(d)))
        print("| %s − %s | %s | %s |" % (a, b, cols[0], cols[1]))


if __name__ == "__main__":
    main()
