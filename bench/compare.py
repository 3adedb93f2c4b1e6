"""compare.py FILE - reads the JSON lines of `lopt bench` and bench/torch_peer.py
(scripts/bench.sh: several interleaved rounds, each OpenBLAS kernel choice, torch in
two OpenBLAS set-ups) and prints one Markdown table per OpenBLAS kernel choice.

Per measurement and implementation: the median over rounds of the per-process
medians, and the min / max over every timed run of every round. torch's column is
its fastest set-up in this run (lowest median; the set-up column says which). The
ratio is lopt / torch in time (< 1: lopt faster), marked against its target, and
max/med flags any side whose slowest run is more than 1.3x its median (the
stability criterion of issue 9). GFLOP/s are compared with the fp32 peak the bench
measured for the same number of cores (cpu/fp32-peak)."""
import json
import statistics
import sys

# time ratio lopt / torch that each row must reach (issue 9)
TARGETS = {
    "fmnist-cnn/train-step": 0.6,
    "fmnist-cnn/hvp": 0.6,
    "fmnist8-mlp/es-outer-step": 1 / 3,
    "fmnist8-mlp/es-outer-step-1t": 1 / 3,
}
STABLE = 1.3


def setup_of(r):
    if r["impl"] == "lopt":
        return "lopt"
    return f"torch/OBT={r.get('openblas_threads', 'default')}"


def summary(rs):
    meds = [r["median_ms"] for r in rs]
    s = {"med": statistics.median(meds), "min": min(r["min_ms"] for r in rs),
         "max": max(r["max_ms"] for r in rs), "rounds": len(rs)}
    for key in ("gflops", "inner_steps_per_s", "peak_rss_mb"):
        xs = [r[key] for r in rs if key in r]
        if xs:
            s[key] = statistics.median(xs)
    return s


def main():
    data = {}   # coretype -> bench -> setup -> [rows]
    order = []
    extras = {}
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        ct = r.get("coretype", "unset")
        if "median_ms" not in r:
            extras.setdefault(ct, {}).setdefault(r["bench"], []).append(r)
            continue
        if r["bench"] not in order:
            order.append(r["bench"])
        data.setdefault(ct, {}).setdefault(r["bench"], {}).setdefault(setup_of(r), []).append(r)

    for ct in sorted(data, key=lambda c: c != "unset"):
        rows = data[ct]
        peak = extras.get(ct, {}).get("cpu/fp32-peak", [])
        p_all = statistics.median(r["gflops"] for r in peak) if peak else float("nan")
        p_one = statistics.median(r["gflops_1t"] for r in peak) if peak else float("nan")
        cores = {r.get("openblas_core") for b in rows.values() for rs in b.values() for r in rs}
        print(f"\n### OPENBLAS_CORETYPE={ct} (OpenBLAS kernels: {', '.join(sorted(cores))})\n")
        if peak:
            print(f"fp32 peak measured: {p_one:.0f} GFLOP/s on 1 core, {p_all:.0f} on all "
                  f"({peak[0].get('isa')} FMA loop)\n")
        print("| measurement | lopt median ms [min-max] | torch median ms [min-max] | torch set-up"
              " | lopt/torch | target | lopt max/med | lopt GFLOP/s (% peak) | rounds |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in order:
            if name not in rows:
                continue
            setups = rows[name]
            lo = summary(setups["lopt"]) if "lopt" in setups else None
            torch = {k: summary(v) for k, v in setups.items() if k.startswith("torch")}
            best = min(torch, key=lambda k: torch[k]["med"]) if torch else None
            to = torch[best] if best else None

            def cell(s):
                if not s:
                    return "-"
                c = f"{s['med']:.3f} [{s['min']:.3f}-{s['max']:.3f}]"
                if "inner_steps_per_s" in s:
                    c += f" = {s['inner_steps_per_s']:,.0f} inner steps/s"
                return c
            ratio = lo["med"] / to["med"] if lo and to else float("nan")
            tgt = TARGETS.get(name)
            mark = "" if tgt is None else ("met" if ratio <= tgt else "**MISSED**")
            tcell = f"<= {tgt:.2f} {mark}" if tgt else ""
            stab = lo["max"] / lo["med"] if lo else float("nan")
            stab_cell = f"{stab:.2f}" + ("" if stab <= STABLE else " **unstable**")
            gf = ""
            if lo and "gflops" in lo:
                pk = p_one if name.endswith("-1t") else p_all
                gf = f"{lo['gflops']:.0f} ({100 * lo['gflops'] / pk:.0f}%)"
            print(f"| {name} | {cell(lo)} | {cell(to)} | {best[6:] if best else '-'} | "
                  f"{ratio:.3f} | {tcell} | {stab_cell} | {gf} | {lo['rounds'] if lo else 0} |")
        tstab = []
        for name in order:
            for k, v in rows.get(name, {}).items():
                if k.startswith("torch"):
                    s = summary(v)
                    if s["max"] / s["med"] > STABLE:
                        tstab.append(f"{name} ({k[6:]}: {s['max'] / s['med']:.2f})")
        if tstab:
            print(f"\ntorch runs above {STABLE}x their median: " + "; ".join(tstab))
        for name, rs in extras.get(ct, {}).items():
            if name == "cpu/fp32-peak":
                continue
            fr = [r["fraction"] for r in rs if "fraction" in r]
            if fr:
                print(f"\n{name}: {statistics.median(fr):.4f} of a training step "
                      f"(target <= {rs[0]['target']})")
    busy = [r for c in extras.values() for r in c.get("machine/busy-before", [])]
    if busy:
        hot = [r for r in busy if r["busy_pct"] >= 15]
        print(f"\nmachine before each of {len(busy)} processes: busy {min(r['busy_pct'] for r in busy)}"
              f"-{max(r['busy_pct'] for r in busy)}% of the CPUs; {len(hot)} started above 15%"
              + (" (" + ", ".join(f"{r['what']}/{r['coretype']} {r['busy_pct']}%" for r in hot) + ")"
                 if hot else ""))
    print("\nratio = lopt / torch in time (< 1: lopt faster); torch = its fastest set-up of this"
          "\nrun (torch.set_num_threads(2), OpenBLAS threads as the column says; -1t rows: one"
          "\nthread). min/max over every timed run of every round.")


if __name__ == "__main__":
    main()
