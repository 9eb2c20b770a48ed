"""Drift statistics at scale (issue 6): our exact and profile paths against Evidently.

    .venv/bin/python bench/drift_bench.py [--rows 1000000] [--features 20] [--short] [--json PATH]

``--short``: 100,000 rows (Evidently then takes ~15 s instead of ~2 min).

Part 1 — drift detection. A reference and a current dataset of ``--rows`` rows × ``--features``
numeric features (normal, log-normal, gamma, uniform and bimodal columns; a third of them shifted
enough to drift, a few shifted slightly, the rest unchanged) are generated from a fixed seed.
Each contender runs in its own subprocess (one thread: OMP/OpenBLAS/MKL limited to 1) that
generates the data, then times only its own work and reports peak RSS (``ru_maxrss``) and the RSS
before the timed part, so "extra" memory is what the method itself needed:

* ``evidently``: ``Report([DataDriftPreset()]).run(current, reference)`` on pandas DataFrames
  (built before the clock starts) with an explicit numeric data definition;
* ``exact``: ``workers.drift.detect_drift`` on the raw arrays;
* ``profile``: ``build_reference_profile`` + ``fold`` of the current data into a window +
  ``detect_drift_from_profiles`` (each step timed as well).

Per-feature and dataset verdicts of the three must be equal.

Part 2 — folding throughput on one core: ``fold`` of each current column into an empty window
profile against ``numpy.histogram`` of the same array with the same edges (best of 3 runs),
in feature-values per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def make_plan(features: int) -> dict[str, tuple[str, str]]:
    """Feature name -> (distribution family, change): a third drift, a few shift slightly."""
    plan = {}
    for i in range(features):
        family = ["normal", "lognormal", "gamma", "uniform", "bimodal"][i % 5]
        change = "drift" if i % 3 == 0 else ("slight" if i % 7 == 1 else "none")
        plan[f"f{i:02d}_{family}"] = (family, change)
    return plan


def make_data(rows: int, current_rows: int, features: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    for name, (family, change) in make_plan(features).items():
        shift = {"drift": 0.35, "slight": 0.03, "none": 0.0}[change]

        def sample(n: int, s: float, family: str = family):
            if family == "normal":
                return rng.normal(s, 1.0, n)
            if family == "lognormal":
                return rng.lognormal(s, 0.7, n)
            if family == "gamma":
                return rng.gamma(2.0, 1.0 + s, n)
            if family == "uniform":
                return rng.uniform(s, 1.0 + s, n)
            mix = rng.random(n) < 0.5
            return np.where(mix, rng.normal(-2 + s, 0.7, n), rng.normal(2 + s, 0.7, n))

        ref[name] = sample(rows, 0.0)
        cur[name] = sample(current_rows, shift)
    return ref, cur


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_contender(name: str, args: argparse.Namespace) -> dict:
    # import everything first, so that the RSS before the timed part includes the libraries
    if name == "evidently":
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    else:
        from workers.drift import (
            build_reference_profile,
            detect_drift,
            detect_drift_from_profiles,
            fold,
            window_profile,
        )
    ref, cur = make_data(args.rows, args.current_rows, args.features, args.seed)
    out: dict = {"contender": name}
    if name == "evidently":
        ref_df, cur_df = pd.DataFrame(ref), pd.DataFrame(cur)
        del ref, cur
        definition = DataDefinition(numerical_columns=list(ref_df.columns))
        current = Dataset.from_pandas(cur_df, data_definition=definition)
        reference = Dataset.from_pandas(ref_df, data_definition=definition)
        out["rss_before_mb"] = _rss_mb()
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
        result = snapshot.dict()
        out["seconds"] = time.perf_counter() - start
        verdicts = {}
        dataset = None
        for test in result["tests"]:
            params = test["metric_config"]["params"]
            if params["type"] == "evidently:metric_v2:ValueDrift":
                verdicts[params["column"]] = test["status"] == "FAIL"
            elif params["type"] == "evidently:metric_v2:DriftedColumnsCount":
                dataset = test["status"] == "FAIL"
        methods = {
            m["config"]["column"]: m["config"]["method"]
            for m in result["metrics"]
            if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
        }
        out.update(verdicts=verdicts, dataset_drift=dataset, methods=methods)
    elif name == "exact":
        out["rss_before_mb"] = _rss_mb()
        start = time.perf_counter()
        report = detect_drift(ref, cur)
        out["seconds"] = time.perf_counter() - start
        out.update(
            verdicts={f.feature: f.drifted for f in report.features},
            dataset_drift=report.dataset_drift,
            methods={f.feature: f.method for f in report.features},
            scores={f.feature: f.score for f in report.features},
        )
    elif name == "profile":
        out["rss_before_mb"] = _rss_mb()
        start = time.perf_counter()
        reference = build_reference_profile(ref, rng=1)
        t_ref = time.perf_counter()
        window = fold(window_profile(reference), cur, rng=2)
        t_fold = time.perf_counter()
        report = detect_drift_from_profiles(reference, window)
        end = time.perf_counter()
        out["seconds"] = end - start
        out["steps"] = {
            "reference_profile_s": t_ref - start,
            "fold_s": t_fold - t_ref,
            "detect_s": end - t_fold,
        }
        out["window_json_kb"] = len(json.dumps(window.to_dict())) / 1024
        bare = fold(window_profile(reference, sample_size=0), cur, rng=2)
        out["window_json_no_sample_kb"] = len(json.dumps(bare.to_dict())) / 1024
        out.update(
            verdicts={f.feature: f.drifted for f in report.features},
            dataset_drift=report.dataset_drift,
            methods={f.feature: f.method for f in report.features},
            scores={f.feature: f.score for f in report.features},
        )
    else:
        raise SystemExit(f"unknown contender {name}")
    out["maxrss_mb"] = _maxrss_mb()
    return out


def fold_throughput(args: argparse.Namespace) -> dict:
    import numpy as np

    from workers.drift import DatasetProfile, build_reference_profile, fold

    ref, cur = make_data(args.rows, args.current_rows, args.features, args.seed)
    reference = build_reference_profile(ref, rng=1)
    del ref
    total_values = sum(v.size for v in cur.values())

    def best(fn, repeats: int = 3) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def all_histograms() -> None:
        for name, values in cur.items():
            np.histogram(values, reference[name].edges)

    def all_folds(no_sample: bool) -> None:
        for name, values in cur.items():
            fp = reference[name].empty_like()
            if no_sample:
                fp.sample.capacity = 0
            fold(DatasetProfile({name: fp}), {name: values}, rng=0)

    t_hist = best(all_histograms)
    t_fold = best(lambda: all_folds(False))
    t_fold_nosample = best(lambda: all_folds(True))
    return {
        "values": total_values,
        "numpy_histogram_values_per_s": total_values / t_hist,
        "fold_values_per_s": total_values / t_fold,
        "fold_no_sample_values_per_s": total_values / t_fold_nosample,
        "ratio": t_hist / t_fold,
        "ratio_no_sample": t_hist / t_fold_nosample,
    }


def spawn(mode: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--rows",
        str(args.rows),
        "--current-rows",
        str(args.current_rows),
        "--features",
        str(args.features),
        "--seed",
        str(args.seed),
        *(["--short"] if args.short else []),
        "--child",
        mode,
    ]
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="reference rows (1,000,000)")
    parser.add_argument("--current-rows", type=int, default=None, help="default: --rows")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--contenders", default="evidently,exact,profile", help="comma-separated subset"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parse(parser, full={"rows": 1_000_000}, short={"rows": 100_000})
    if args.current_rows is None:
        args.current_rows = args.rows

    if args.child:
        result = fold_throughput(args) if args.child == "fold" else run_contender(args.child, args)
        print(json.dumps(result))
        return

    # the parent stays small (no numpy/evidently import): Linux carries a parent's peak RSS
    # over into a child's ru_maxrss
    from importlib.metadata import version

    print(
        f"# drift bench: {args.rows:,} reference rows, {args.current_rows:,} current rows, "
        f"{args.features} numeric features"
    )
    print(
        f"# Python {platform.python_version()}, numpy {version('numpy')}, "
        f"scipy {version('scipy')}, evidently {version('evidently')}, "
        f"{os.cpu_count()} CPUs (each contender: 1 thread)"
    )
    plan = {name: change for name, (_, change) in make_plan(args.features).items()}
    results = {}
    for name in args.contenders.split(","):
        results[name] = spawn(name, args)
        r = results[name]
        print(
            f"{name:10s} {r['seconds']:9.2f} s   peak RSS {r['maxrss_mb']:8.0f} MB   "
            f"(+{r['maxrss_mb'] - r['rss_before_mb']:.0f} MB over the loaded data)",
            flush=True,
        )
    print()
    print("| contender | wall s | peak RSS MB | RSS over loaded data MB | speed-up vs Evidently |")
    print("|---|---|---|---|---|")
    base = results.get("evidently", {}).get("seconds")
    for name, r in results.items():
        speedup = f"{base / r['seconds']:.1f}×" if base else "–"
        print(
            f"| {name} | {r['seconds']:.2f} | {r['maxrss_mb']:.0f} | "
            f"{r['maxrss_mb'] - r['rss_before_mb']:.0f} | {speedup} |"
        )
    if "profile" in results:
        steps = results["profile"]["steps"]
        print(
            f"\nprofile steps: reference profile {steps['reference_profile_s']:.2f} s, "
            f"fold {steps['fold_s']:.2f} s, detect {steps['detect_s'] * 1000:.1f} ms; "
            f"window profile JSON {results['profile']['window_json_kb']:.0f} KB "
            f"({results['profile']['window_json_no_sample_kb']:.0f} KB without samples)"
        )
    names = list(results)
    verdicts = {n: results[n]["verdicts"] for n in names}
    features = sorted(next(iter(verdicts.values())))
    same = all(verdicts[n] == verdicts[names[0]] for n in names)
    same_dataset = len({results[n]["dataset_drift"] for n in names}) == 1
    drifted = sum(verdicts[names[0]][f] for f in features)
    print(
        f"\nverdicts equal across {', '.join(names)}: {same} "
        f"({drifted}/{len(features)} features drifted; dataset drift "
        f"{results[names[0]]['dataset_drift']}, equal: {same_dataset})"
    )
    for f in features:
        row = " ".join(f"{n}={verdicts[n][f]!s:5s}" for n in names)
        scores = " ".join(
            f"{n}:{results[n]['scores'][f]:.4f}" for n in names if "scores" in results[n]
        )
        print(f"  {f:14s} plan={plan[f]:6s} {row} {scores}")

    fold = spawn("fold", args)
    results["fold"] = fold
    print("\nfolding throughput (one core, feature-values/s):")
    print(f"  numpy.histogram, same edges : {fold['numpy_histogram_values_per_s'] / 1e6:7.1f} M/s")
    print(
        f"  fold (with 1,000-value reservoir): {fold['fold_values_per_s'] / 1e6:7.1f} M/s "
        f"= {fold['ratio']:.0%} of numpy.histogram"
    )
    print(
        f"  fold (no reservoir)         : {fold['fold_no_sample_values_per_s'] / 1e6:7.1f} M/s "
        f"= {fold['ratio_no_sample']:.0%}"
    )
    write_figures(args, results, same and same_dataset, names, features, verdicts)
    if not (same and same_dataset):
        raise SystemExit("verdicts differ")


SPEEDUP_TARGET, FOLD_TARGET = 10.0, 0.5


def write_figures(
    args: argparse.Namespace,
    results: dict,
    same: bool,
    names: list[str],
    features: list[str],
    verdicts: dict[str, dict[str, bool]],
) -> None:
    from importlib.metadata import version

    from _common import figure, pct, write_json

    size = f"{args.rows:,} × {args.current_rows:,} rows × {args.features} features"
    evidently = results.get("evidently")
    peer = f"Evidently {version('evidently')} DataDriftPreset" if evidently else None
    figures = []
    for name, label in (("exact", "exact path (raw arrays)"), ("profile", "profile path")):
        if name not in results:
            continue
        r = results[name]
        speedup = evidently["seconds"] / r["seconds"] if evidently else None
        figures.append(
            figure(
                f"drift detection, {label}, {size}",
                r["seconds"],
                "s",
                target="≥ 10× faster than Evidently, same verdicts" if evidently else None,
                ok=(speedup >= SPEEDUP_TARGET and same) if speedup is not None else None,
                peer=peer,
                peer_value=evidently["seconds"] if evidently else None,
                ratio=speedup,
                ratio_text=f"{speedup:.0f}× faster" if speedup else None,
                note=f"peak RSS {r['maxrss_mb']:.0f} MB, "
                f"+{r['maxrss_mb'] - r['rss_before_mb']:.0f} MB over the loaded data"
                + (
                    f" (Evidently +{evidently['maxrss_mb'] - evidently['rss_before_mb']:.0f} MB)"
                    if evidently
                    else ""
                ),
            )
        )
    agree = sum(len({verdicts[n][f] for n in names}) == 1 for f in features)
    drifted = sum(verdicts[names[0]][f] for f in features)
    figures.append(
        figure(
            f"per-feature verdicts equal across {', '.join(names)}",
            agree,
            f"of {len(features)} features",
            target=f"all {len(features)} and the dataset verdict",
            ok=same,
            note=f"{drifted}/{len(features)} features drifted",
        )
    )
    fold = results["fold"]
    figures.append(
        figure(
            "fold throughput (1,000-value reservoir), one core",
            fold["fold_values_per_s"],
            "values/s",
            target="≥ 50% of numpy.histogram",
            ok=fold["ratio"] >= FOLD_TARGET,
            peer="numpy.histogram, same edges",
            peer_value=fold["numpy_histogram_values_per_s"],
            ratio_text=pct(fold["ratio"]),
        )
    )
    figures.append(
        figure(
            "fold throughput, no reservoir",
            fold["fold_no_sample_values_per_s"],
            "values/s",
            peer="numpy.histogram, same edges",
            peer_value=fold["numpy_histogram_values_per_s"],
            ratio_text=pct(fold["ratio_no_sample"]),
        )
    )
    if "profile" in results:
        steps = results["profile"]["steps"]
        figures.append(
            figure(
                "profile path: detection from two profiles",
                steps["detect_s"] * 1000,
                "ms",
                note=f"reference profile {steps['reference_profile_s']:.2f} s, "
                f"fold {steps['fold_s']:.2f} s; window profile "
                f"{results['profile']['window_json_kb']:.0f} KB JSON",
            )
        )
    write_json(args, bench="drift", figures=figures, extra={"results": results})


if __name__ == "__main__":
    main()
