"""compare.py FILE - reads the JSON lines of `lopt bench` and bench/torch_peer.py
(several rounds, torch in one or more set-ups) and prints, per measurement, the
median over rounds of each implementation's medians, the ratio lopt/torch against
torch's faster set-up, GFLOP/s and peak RSS."""
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
        impl = r["impl"]
        if impl == "torch":
            impl = "torch/openblas-" + str(r.get("openblas_threads", "default"))
        rows.setdefault(r["bench"], {}).setdefault(impl, []).append(r)
    print()
    print(f"{'measurement':42s} {'lopt ms':>9s} {'torch ms':>9s} {'lopt/torch':>10s}"
          f" {'torch set-up':>18s} {'lopt GF/s':>9s} {'torch GF/s':>10s} {'lopt MB':>8s} {'torch MB':>8s}")
    for name, impls in rows.items():
        def med(impl, key="median_ms"):
            xs = [r[key] for r in impls.get(impl, []) if key in r]
            return statistics.median(xs) if xs else float("nan")
        torch_impls = [i for i in impls if i.startswith("torch")]
        best = min(torch_impls, key=lambda i: med(i)) if torch_impls else "torch"
        lo, to = med("lopt"), med(best)
        print(f"{name:42s} {lo:9.3f} {to:9.3f} {lo / to:10.3f} {best[6:]:>18s}"
              f" {med('lopt', 'gflops'):9.1f} {med(best, 'gflops'):10.1f}"
              f" {med('lopt', 'peak_rss_mb'):8.0f} {med(best, 'peak_rss_mb'):8.0f}")
    print("\nratio < 1: lopt is faster. torch: set_num_threads(2); the set-up column says which")
    print("OpenBLAS threading was faster for torch (its median over rounds is compared).")
    for name, impls in rows.items():
        for r in impls.get("lopt", []):
            if "fraction" in r:
                print(f"{name}: {r['fraction']:.4f} (target {r['target']})")
                break


if __name__ == "__main__":
    main()
