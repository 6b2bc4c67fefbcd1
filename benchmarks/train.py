"""Training and optimization benchmarks.

1. XGBoost: ``workbench.training.train_xgboost`` against raw ``xgboost.dask`` on the same
   cluster and the same persisted data, same parameters. Runs are interleaved (raw, workbench
   without tracking, workbench with MLflow tracking and a progress bar, in rotating order) to
   cancel drift on a shared machine; medians are reported, with the overhead ratio.
2. Optimization of a reference model (an MLP on scikit-learn's digits, trained here): size
   ratio, latency ratio and accuracy change of torchao int8 (dynamic and weight-only),
   magnitude and structured pruning, and a distilled student, measured on this machine.

    python benchmarks/train.py [--rows 400000] [--features 20] [--rounds 200] [--repeats 7]
                               [--workers 2] [--skip-xgboost] [--skip-optimize]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import tempfile
import time
from typing import Any


def make_partition(i: int, rows: int, weights: Any, names: list[str]) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1000 + i)
    X = rng.standard_normal((rows, len(names))).astype("float32")
    frame = pd.DataFrame(X, columns=names)
    frame["label"] = (X @ weights + rng.standard_normal(rows) > 0).astype("int8")
    return frame


def xgboost_benchmark(args: argparse.Namespace) -> None:
    import dask.dataframe as dd
    import numpy as np
    import xgboost.dask as xgb_dask

    import workbench
    from workbench.training import TerminalProgress, train_xgboost

    nparts = 4 * args.workers
    weights = np.random.default_rng(0).standard_normal(args.features)
    columns = [f"f{i}" for i in range(args.features)]
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "seed": 0}
    features = columns

    with workbench.launch(
        "local-cpu",
        n_workers=args.workers,
        threads_per_worker=args.threads,
        dashboard_address=":0",
        wait=True,
    ) as cluster:
        client = cluster.client
        # Generated on the workers (a noisy linear concept), persisted once, shared by all runs.
        df = client.persist(
            dd.from_map(
                make_partition,
                range(nparts),
                rows=args.rows // nparts,
                weights=weights,
                names=columns,
            )
        )

        def raw() -> float:
            start = time.perf_counter()
            dtrain = xgb_dask.DaskQuantileDMatrix(client, df[features], df["label"])
            out = xgb_dask.train(
                client,
                {"tree_method": "hist", "device": "cpu", **params},
                dtrain,
                num_boost_round=args.rounds,
                evals=[(dtrain, "train")],
                verbose_eval=False,
            )
            assert out["booster"].num_boosted_rounds() == args.rounds
            return time.perf_counter() - start

        def wb(tracking: bool) -> float:
            start = time.perf_counter()
            model = train_xgboost(
                cluster,
                df,
                "label",
                params=params,
                num_boost_round=args.rounds,
                progress=TerminalProgress(file=io.StringIO()) if tracking else None,
                tracking=tracking,
                experiment="benchmark",
            )
            assert model.booster.num_boosted_rounds() == args.rounds
            return time.perf_counter() - start

        runs: dict[str, Any] = {
            "raw xgboost.dask": raw,
            "workbench (no tracking, no progress)": lambda: wb(False),
            "workbench (MLflow tracking + progress bar)": lambda: wb(True),
        }
        for fn in runs.values():  # warm-up: imports, worker caches, MLflow store creation
            fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for i in range(args.repeats):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                times[name].append(runs[name]())
    base = statistics.median(times["raw xgboost.dask"])
    print(
        f"XGBoost: {args.rows} rows x {args.features} features, {args.rounds} rounds, "
        f"{args.workers} workers x {args.threads} thread(s), {args.repeats} interleaved repeats"
    )
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"  {name:44s} median {med:7.3f} s  (min {min(values):.3f}, max {max(values):.3f})"
            f"  ratio {med / base:.3f}  overhead {100 * (med / base - 1):+.1f}%"
        )


def optimize_benchmark(args: argparse.Namespace) -> None:
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    from workbench import optimize

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
    model.eval()
    variants = {
        "baseline fp32": model,
        "int8 dynamic (torchao)": optimize.quantize_int8(model),
        "int8 weight-only (torchao)": optimize.quantize_int8(model, mode="weight_only"),
        "magnitude-pruned 50%": optimize.prune_magnitude(model, 0.5),
        "structured-pruned 50%": optimize.prune_structured(model, 0.5),
        "distilled student (width 25%)": optimize.distill(
            model, Xtr, ytr, width=0.25, epochs=30, lr=2e-3, progress=None
        ),
    }
    table = optimize.compare(variants, Xte, yte, batch_size=256, repeats=args.latency_repeats)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            f"\nOptimization of a reference MLP (64-512-512-10) on digits, batch 256, "
            f"torch threads={torch.get_num_threads()}"
        )
        print(table.round(4).to_string())
    exported = optimize.export_onnx(model, Xte[:8])
    print(
        f"ONNX export: {exported.size_bytes} bytes, max |onnxruntime - torch| = "
        f"{exported.max_abs_diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-repeats", type=int, default=50)
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
