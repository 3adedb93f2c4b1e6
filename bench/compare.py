"""compare.py FILE - reads the JSON lines of `lopt bench` and bench/torch_peer.py
(scripts/bench.sh: several interleaved rounds, each OpenBLAS kernel choice, torch in
two OpenBLAS set-ups) and prints one Markdown table per OpenBLAS kernel choice.

Per measurement and implementation: the median over rounds of the per-process
medians, and the min / max over every timed run of every round. torch's column is
its fastest set-up in this run (lowest median; the set-up column says which); for
a row with a one-thread twin (X and X-1t), torch's one-thread run of X-1t is one of
X's candidate set-ups too, since on a loaded machine torch's two OpenMP threads can
be slower than one (its workers spin-wait). The
ratio is lopt / torch in time (< 1: lopt faster), marked against its target, and
max/med flags any side whose slowest run is more than 1.3x its median (the
stability criterion of issue 9). GFLOP/s are compared with the fp32 peak the bench
measured for the same number of cores (cpu/fp32-peak).

Processes during which other processes used more than CLEAN_PCT of the CPUs
(scripts/bench.sh's machine/others-during notes) are left out of the medians and
extremes when at least one clean process of that row and set-up remains; the
rounds column says clean/total. One-thread rows also get the ratio of CPU time per
call (lopt's CPU ms / torch's), which another process on the core does not
inflate."""
import json
import statistics
import sys

# time ratio lopt / torch that each row must reach (issue 9)
TARGETS = {
    "fmnist-cnn/train-step": 0.6,
    "fmnist-cnn/hvp": 0.6,
    "fmnist8-mlp/es-outer-step": 1 / 3,   # meta-training as it runs: every core
}
STABLE = 1.3
CLEAN_PCT = 10.0


def setup_of(r):
    if r["impl"] == "lopt":
        return "lopt"
    return f"torch/OBT={r.get('openblas_threads', 'default')}"


def summary(rs):
    clean = [r for r in rs if r.get("others_pct", 0.0) <= CLEAN_PCT]
    total = len(rs)
    if clean:
        rs = clean
    meds = [r["median_ms"] for r in rs]
    s = {"med": statistics.median(meds), "min": min(r["min_ms"] for r in rs),
         "max": max(r["max_ms"] for r in rs), "rounds": f"{len(clean)}/{total}"}
    for key in ("gflops", "inner_steps_per_s", "peak_rss_mb", "cpu_ms"):
        xs = [r[key] for r in rs if key in r]
        if xs:
            s[key] = statistics.median(xs)
    return s


# meta-training on fmnist-cnn: inner steps/s of a whole outer step against what the
# cores would do running plain training steps side by side (issue 9)
SCALING_TARGET = 0.8


def print_scaling(rows, order):
    """One line per fmnist-cnn outer-step row: its inner steps/s over workers x the
    plain one-thread step's rate (fmnist-cnn/train-step-1t). An inner step of es, pes
    and nres also runs the outer loss's forward (every step, --outer-weight mean) and
    merged an HVP, so only fulles (end-weighted: the outer forward at the horizon
    alone) and es-end (--outer-weight end) do the plain step's work plus the learned
    update; the target is read for those two and shown for the others."""
    plain = rows.get("fmnist-cnn/train-step-1t", {}).get("lopt")
    metas = [n for n in order if n.startswith("fmnist-cnn/") and n.endswith("-outer-step")
             and "lopt" in rows.get(n, {})]
    if not plain or not metas:
        return
    rate1 = 1e3 / summary(plain)["med"]
    print(f"\nfmnist-cnn meta-training against plain steps on every core (one-thread plain "
          f"step: {rate1:.0f} steps/s; target >= {SCALING_TARGET} for fulles and es-end):\n")
    print("| outer step | workers | inner steps/s | workers x plain rate | ratio |")
    print("|---|---|---|---|---|")
    for n in metas:
        rs = rows[n]["lopt"]
        s = summary(rs)
        w = max(r.get("workers", 1) for r in rs)
        ratio = s["inner_steps_per_s"] / (w * rate1)
        mark = ""
        if n in ("fmnist-cnn/fulles-outer-step", "fmnist-cnn/es-end-outer-step"):
            mark = " met" if ratio >= SCALING_TARGET else " **MISSED**"
        print(f"| {n} | {w} | {s['inner_steps_per_s']:,.0f} | {w * rate1:,.0f} | "
              f"{ratio:.2f}{mark} |")


def main():
    data = {}   # coretype -> bench -> setup -> [rows]
    order = []
    extras = {}
    pending = []   # the rows of the process running, until its others-during note
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        ct = r.get("coretype", "unset")
        if r["bench"] == "machine/others-during":
            for p in pending:
                p["others_pct"] = r["others_pct"]
            pending = []
        if "median_ms" not in r:
            extras.setdefault(ct, {}).setdefault(r["bench"], []).append(r)
            continue
        pending.append(r)
        if r["bench"] not in order:
            order.append(r["bench"])
        data.setdefault(ct, {}).setdefault(r["bench"], {}).setdefault(setup_of(r), []).append(r)

    for ct in sorted(data, key=lambda c: c != "unset"):
        rows = data[ct]
        # the best peak of the whole run: another process on the cores lowers it, never
        # raises it
        peak = [r for c in extras.values() for r in c.get("cpu/fp32-peak", [])]
        p_all = max(r["gflops"] for r in peak) if peak else float("nan")
        p_one = max(r["gflops_1t"] for r in peak) if peak else float("nan")
        cores = {r.get("openblas_core") for b in rows.values() for rs in b.values() for r in rs}
        print(f"\n### OPENBLAS_CORETYPE={ct} (OpenBLAS kernels: {', '.join(sorted(cores))})\n")
        if peak:
            print(f"fp32 peak measured (best of the run): {p_one:.0f} GFLOP/s on 1 core, "
                  f"{p_all:.0f} on all ({peak[0].get('isa')} FMA loop)\n")
        print("| measurement | lopt median ms [min-max] | torch median ms [min-max] | torch set-up"
              " | lopt/torch | target | lopt max/med | lopt GFLOP/s (% peak) | CPU-time ratio"
              " | rounds clean/all (lopt, torch) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in order:
            if name not in rows:
                continue
            setups = rows[name]
            lo = summary(setups["lopt"]) if "lopt" in setups else None
            # a one-thread row is only compared with a one-thread torch: with OpenBLAS's
            # default threads its matrix products use every core whatever
            # torch.set_num_threads says
            torch = {k: summary(v) for k, v in setups.items()
                     if k.startswith("torch") and (not name.endswith("-1t") or k.endswith("=1"))}
            if not name.endswith("-1t"):
                for k, v in rows.get(name + "-1t", {}).items():
                    if k.startswith("torch"):
                        torch[k + ",1-thread"] = summary(v)
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
            cpu = ""
            if name.endswith("-1t") and lo and to and "cpu_ms" in lo and "cpu_ms" in to:
                cpu = f"{lo['cpu_ms'] / to['cpu_ms']:.3f}"
            print(f"| {name} | {cell(lo)} | {cell(to)} | {best[6:] if best else '-'} | "
                  f"{ratio:.3f} | {tcell} | {stab_cell} | {gf} | {cpu} | "
                  f"{lo['rounds'] if lo else '-'}, {to['rounds'] if to else '-'} |")
        print_scaling(rows, order)
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
    during = [r for c in extras.values() for r in c.get("machine/others-during", [])]
    if during:
        dirty = [r for r in during if r["others_pct"] > CLEAN_PCT]
        print(f"\nother processes' share of the CPUs while each of {len(during)} processes ran: "
              f"{min(r['others_pct'] for r in during)}-{max(r['others_pct'] for r in during)}%; "
              f"{len(dirty)} above {CLEAN_PCT:.0f}% (left out of the medians where a clean run of "
              f"the row remains)")
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
