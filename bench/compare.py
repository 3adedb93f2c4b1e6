"""compare.py FILE - reads the JSON lines of `lopt bench` and bench/torch_peer.py
(several rounds each) and prints, per measurement, the median over rounds of each
implementation's median, the ratio lopt/torch, GFLOP/s and peak RSS."""
import json
import statistics
import sys


def main():
    rows = {}
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        rows.setdefault(r["bench"], {}).setdefault(r["impl"], []).append(r)
    print()
    print(f"{'measurement':28s} {'lopt ms':>9s} {'torch ms':>9s} {'lopt/torch':>10s}"
          f" {'lopt GF/s':>9s} {'torch GF/s':>10s} {'lopt MB':>8s} {'torch MB':>8s}")
    for name, impls in rows.items():
        def med(impl, key="median_ms"):
            xs = [r[key] for r in impls.get(impl, []) if key in r]
            return statistics.median(xs) if xs else float("nan")
        lo, to = med("lopt"), med("torch")
        print(f"{name:28s} {lo:9.3f} {to:9.3f} {lo / to:10.3f} {med('lopt', 'gflops'):9.1f}"
              f" {med('torch', 'gflops'):10.1f} {med('lopt', 'peak_rss_mb'):8.0f}"
              f" {med('torch', 'peak_rss_mb'):8.0f}")
    print("\nratio < 1: lopt is faster. torch: set_num_threads(2), OPENBLAS_NUM_THREADS=1.")


if __name__ == "__main__":
    main()
