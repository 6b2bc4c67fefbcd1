"""Training and optimization benchmarks.

1. XGBoost: ``workbench.training.train_xgboost`` against raw ``xgboost.dask`` on the same
   cluster and the same persisted data, same parameters. Runs are interleaved (raw, workbench
   without tracking, workbench with MLflow tracking and a progress bar, in rotating order) to
   cancel drift on a shared machine; medians are reported, with the overhead ratio.
2. Optimization of a reference model (an MLP on scikit-learn's digits, trained here): size
   ratio, latency ratio and accuracy change of the int8 paths (the CPU default, ONNX Runtime;
   torchao with and without torch.compile; weight-only), magnitude and structured pruning
   (with and without fine-tuning) and a distilled student, measured on this machine.

``scale(options)`` (``make bench-scale``): the XGBoost comparison at 1, 2 and 4 workers
for two data sizes, a table and a curve each (benchmarks/_scale.py).

    python benchmarks/train.py [--rows 400000] [--features 20] [--rounds 200] [--repeats 7]
                               [--workers 2] [--skip-xgboost] [--skip-optimize]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions, interleave

#: the third XGBoost series: train_xgboost with MLflow tracking and a progress bar
TRACKED = "workbench (MLflow tracking + progress bar)"


def make_partition(i: int, rows: int, weights: Any, names: list[str]) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1000 + i)
    X = rng.standard_normal((rows, len(names))).astype("float32")
    frame = pd.DataFrame(X, columns=names)
    frame["label"] = (X @ weights + rng.standard_normal(rows) > 0).astype("int8")
    return frame


def _generate(client: Any, rows: int, features: int, nparts: int) -> Any:
    """A noisy linear classification problem, generated on the workers and persisted."""
    import dask.dataframe as dd
    import numpy as np

    weights = np.random.default_rng(0).standard_normal(features)
    columns = [f"f{i}" for i in range(features)]
    return client.persist(
        dd.from_map(
            make_partition, range(nparts), rows=rows // nparts, weights=weights, names=columns
        )
    )


def _xgboost_runs(cluster: Any, df: Any, rounds: int, tracked: bool) -> dict[str, Any]:
    """raw xgboost.dask and train_xgboost on the same cluster and data, same parameters."""
    import xgboost.dask as xgb_dask

    from workbench.training import TerminalProgress, train_xgboost

    client = cluster.client
    features = [c for c in df.columns if c != "label"]
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "seed": 0}

    def raw() -> None:
        dtrain = xgb_dask.DaskQuantileDMatrix(client, df[features], df["label"])
        out = xgb_dask.train(
            client,
            {"tree_method": "hist", "device": "cpu", **params},
            dtrain,
            num_boost_round=rounds,
            evals=[(dtrain, "train")],
            verbose_eval=False,
        )
        assert out["booster"].num_boosted_rounds() == rounds

    def wb(tracking: bool) -> None:
        model = train_xgboost(
            cluster,
            df,
            "label",
            params=params,
            num_boost_round=rounds,
            progress=TerminalProgress(file=io.StringIO()) if tracking else None,
            tracking=tracking,
            experiment="benchmark",
        )
        assert model.booster.num_boosted_rounds() == rounds

    runs: dict[str, Any] = {RAW: raw, WORKBENCH: lambda: wb(False)}
    if tracked:
        runs[TRACKED] = lambda: wb(True)
    return runs


def xgboost_benchmark(args: argparse.Namespace) -> None:
    import workbench

    with workbench.launch(
        "local-cpu",
        n_workers=args.workers,
        threads_per_worker=args.threads,
        dashboard_address=":0",
        wait=True,
    ) as cluster:
        df = _generate(cluster.client, args.rows, args.features, 4 * args.workers)
        runs = _xgboost_runs(cluster, df, args.rounds, tracked=True)
        times = interleave(runs, args.repeats, warmup=1)
    base = statistics.median(times[RAW])
    print(
        f"XGBoost: {args.rows} rows x {args.features} features, {args.rounds} rounds, "
        f"{args.workers} workers x {args.threads} thread(s), {args.repeats} interleaved repeats"
    )
    names = {RAW: "raw xgboost.dask", WORKBENCH: "workbench (no tracking, no progress)"}
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"  {names.get(name, name):44s} median {med:7.3f} s  "
            f"(min {min(values):.3f}, max {max(values):.3f})"
            f"  ratio {med / base:.3f}  overhead {100 * (med / base - 1):+.1f}%"
        )


#: the scale curves: rows of each data size, workers, boosting rounds, rounds per point
SCALE_ROWS = (50_000, 200_000)
SCALE_WORKERS = (1, 2, 4)
SCALE_FEATURES = 20
SCALE_BOOST_ROUNDS = 40
SCALE_REPEATS = 3


def scale(options: ScaleOptions) -> list[Curve]:
    """train_xgboost vs raw xgboost.dask at 1, 2 and 4 workers, for two data sizes."""
    import workbench

    sizes = SCALE_ROWS[:1] if options.quick else SCALE_ROWS
    workers = SCALE_WORKERS[:2] if options.quick else SCALE_WORKERS
    curves = {
        rows: Curve(
            key=f"xgboost-{rows // 1000}k",
            title=f"XGBoost, {rows:,} rows x {SCALE_FEATURES} features, {SCALE_BOOST_ROUNDS} "
            "rounds: workbench.training.train_xgboost vs xgboost.dask",
            x_label="workers",
            workbench="train_xgboost",
            raw="xgboost.dask",
            kind="time",
            target=1.03,
            notes=[
                "the same LocalCluster (1 thread per worker) and the same persisted data for "
                "both; time from the call to a trained booster, DaskQuantileDMatrix included",
                "train_xgboost without MLflow tracking and progress display (each adds a "
                "fixed 0.1-0.3 s; see docs/training.md)",
                "2 CPU cores: 4 workers share them, so more workers is not faster here",
            ],
        )
        for rows in sizes
    }
    for n in workers:
        with workbench.launch(
            "local-cpu", n_workers=n, threads_per_worker=1, dashboard_address=":0", wait=True
        ) as cluster:
            for rows in sizes:
                df = _generate(cluster.client, rows, SCALE_FEATURES, 4 * n)
                runs = _xgboost_runs(cluster, df, SCALE_BOOST_ROUNDS, tracked=False)
                times = interleave(runs, options.repeats(SCALE_REPEATS), warmup=1)
                label = f"{n} worker{'s' if n > 1 else ''}"
                curves[rows].points.append(Point(label, n, times))
                print(
                    f"  {rows:,} rows, {label}: raw {statistics.median(times[RAW]):.2f} s, "
                    f"workbench {statistics.median(times[WORKBENCH]):.2f} s",
                    flush=True,
                )
                del df
    return list(curves.values())


def reference_model() -> tuple[Any, Any, Any, Any, Any]:
    """The reference MLP (64-512-512-10) trained on digits: (model, Xtr, ytr, Xte, yte)."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    Xtr, ytr, Xte, yte = X[:1400], y[:1400], X[1400:], y[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        for i in range(0, len(Xtr), 64):
            loss = nn.functional.cross_entropy(model(Xtr[i : i + 64]), ytr[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), Xtr, ytr, Xte, yte


def optimize_benchmark(args: argparse.Namespace) -> None:
    import time

    import torch

    from workbench import optimize

    for noisy in ("torchao", "torch.utils._pytree", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # One thread by default: with a thread per core, a pool whose threads wait for each
    # other at every layer is at the mercy of whatever else runs on a shared machine.
    torch.set_num_threads(args.torch_threads)
    model, Xtr, ytr, Xte, yte = reference_model()
    batch = Xte[:256]
    t0 = time.perf_counter()
    compiled = optimize.quantize_int8(model, backend="torchao", compile=True, example_input=batch)
    compile_s = time.perf_counter() - t0
    fp32_onnx = optimize.export_onnx(model, Xte[:8])
    variants = {
        "baseline fp32 (torch)": model,
        "fp32 (onnxruntime)": optimize.OnnxRuntimeModel(fp32_onnx.path),
        "int8, CPU default (onnxruntime)": optimize.quantize_int8(model, example_input=Xte[:8]),
        "int8 dynamic (torchao + torch.compile)": compiled,
        "int8 dynamic (torchao, eager)": optimize.quantize_int8(model, backend="torchao"),
        "int8 weight-only (torchao, eager)": optimize.quantize_int8(model, mode="weight_only"),
        "magnitude-pruned 50%": optimize.prune_magnitude(model, 0.5),
        "structured-pruned 50%": optimize.prune_structured(model, 0.5),
        "structured-pruned 50% + fine-tuned": optimize.fine_tune(
            optimize.prune_structured(model, 0.5),
            Xtr,
            ytr,
            teacher=model,
            epochs=20,
            lr=2e-3,
            temperature=2.0,
            alpha=0.5,
            progress=None,
        ),
        "distilled student (width 25%)": optimize.distill(
            model,
            Xtr,
            ytr,
            width=0.25,
            epochs=30,
            lr=2e-3,
            temperature=2.0,
            alpha=0.5,
            progress=None,
        ),
    }
    table = optimize.compare(variants, Xte, yte, batch_size=256, repeats=args.latency_repeats)
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(
            f"\nOptimization of a reference MLP (64-512-512-10) on digits, batch 256, "
            f"torch and onnxruntime threads={torch.get_num_threads()}, "
            f"{args.latency_repeats} interleaved rounds"
        )
        print(table.round(4).to_string())
    print(
        f"torch.compile of the torchao model took {compile_s:.1f} s; ONNX export: "
        f"{fp32_onnx.size_bytes} bytes, max |onnxruntime - torch| = {fp32_onnx.max_abs_diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-repeats", type=int, default=100)
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch and onnxruntime threads (latency)"
    )
    parser.add_argument("--skip-xgboost", action="store_true")
    parser.add_argument("--skip-optimize", action="store_true")
    args = parser.parse_args()
    # Keep the benchmark's clusters and MLflow runs out of the user's real state directory.
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if not args.skip_xgboost:
        xgboost_benchmark(args)
    if not args.skip_optimize:
        optimize_benchmark(args)


if __name__ == "__main__":
    main()
