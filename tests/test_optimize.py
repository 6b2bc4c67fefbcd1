"""Model optimization on a small trained digits classifier: the claims are checked, not timed."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from workbench import optimize  # noqa: E402
from workbench.training import (  # noqa: E402
    NotTrainedError,
    OptimizationError,
    TorchTrainer,
    UnknownNameError,
)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return {"X": X[:1400], "y": y[:1400], "Xt": X[1400:], "yt": y[1400:]}


def fit(model: Any, data: dict[str, Any], epochs: int = 10) -> Any:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(data["X"]), 64):
            loss = nn.functional.cross_entropy(model(data["X"][i : i + 64]), data["y"][i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: Any, data: dict[str, Any]) -> float:
    with torch.no_grad():
        return float((model(data["Xt"]).argmax(1) == data["yt"]).float().mean())


@pytest.fixture(scope="module")
def teacher(data: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    return fit(model, data)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x: Any) -> Any:
        x = x.view(-1, 1, 8, 8)
        x = torch.relu(self.b1(self.c1(x)))
        x = self.pool(torch.relu(self.c2(x)))
        x = torch.flatten(x, 1)
        return self.out(torch.relu(self.fc(x)))


def test_int8_on_cpu_runs_onnxruntime_integer_kernels(teacher, data, tmp_path) -> None:
    import pickle

    import onnx

    q = optimize.quantize_int8(teacher)  # a CPU model: ONNX Runtime's int8 path
    assert isinstance(q, optimize.OnnxRuntimeModel) and q.path.exists()
    assert isinstance(teacher[0].weight, nn.Parameter)  # the original is untouched
    # the speed comes from integer matrix products: every Linear became one, on int8 weights
    graph = onnx.load(str(q.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") == 3 and not {"MatMul", "Gemm"} & set(ops)
    int8 = [
        i
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and not i.name.endswith("zero_point")
    ]
    assert sum(np.prod(i.dims) for i in int8) == 64 * 256 + 256 * 256 + 256 * 10
    # smaller, the same architecture, the same answers up to int8 rounding
    assert optimize.size_on_disk(teacher) / optimize.size_on_disk(q) > 3.0
    assert optimize.count_parameters(q) == optimize.count_parameters(teacher)
    assert abs(accuracy(q, data) - accuracy(teacher, data)) < 0.01  # under 1 point
    with torch.no_grad():
        ref, got = teacher(data["Xt"]), q(data["Xt"])
    assert got.shape == ref.shape and (got - ref).abs().max() < 0.1 * ref.abs().max()
    assert optimize.runtime_of(q) == "onnxruntime (cpu)"
    # copies open their own session; the file is what gets deployed
    again = pickle.loads(pickle.dumps(q))
    torch.testing.assert_close(copy.deepcopy(q)(data["Xt"][:5]), again(data["Xt"][:5]))
    saved = q.save(tmp_path / "digits-int8.onnx")
    assert saved.stat().st_size == optimize.size_on_disk(q)
    kept = optimize.quantize_int8(teacher, path=tmp_path / "here" / "m.onnx", threads=1)
    assert kept.path == tmp_path / "here" / "m.onnx" and kept.session().get_session_options()


def test_int8_torchao_paths_and_choices(teacher, data) -> None:
    assert optimize.backend_for("cpu") == "onnxruntime"
    assert optimize.backend_for("cuda") == optimize.backend_for("cpu", "weight_only") == "torchao"
    q = optimize.quantize_int8(teacher, backend="torchao")  # torch module, int8 weights
    assert type(q[0].weight).__module__.startswith("torchao")  # torchao int8 tensors
    assert optimize.runtime_of(q) == "torchao (cpu)"
    assert optimize.size_on_disk(teacher) / optimize.size_on_disk(q) > 3.0
    assert abs(accuracy(q, data) - accuracy(teacher, data)) < 0.01
    weight_only = optimize.quantize_int8(teacher, mode="weight_only")
    assert type(weight_only[0].weight).__module__.startswith("torchao")
    assert optimize.size_on_disk(weight_only) < optimize.size_on_disk(teacher) / 3
    with pytest.raises(OptimizationError, match="mode must be"):
        optimize.quantize_int8(teacher, mode="int4")
    with pytest.raises(OptimizationError, match="backend must be one of"):
        optimize.quantize_int8(teacher, backend="tensorrt")
    with pytest.raises(OptimizationError, match=r"no nn\.Linear layers"):
        optimize.quantize_int8(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(OptimizationError, match=r"needs an example batch: pass example_input"):
        optimize.quantize_int8(SmallCNN().eval())
    with pytest.raises(OptimizationError, match="runs on CPUs"):
        optimize.quantize_int8(teacher, backend="onnxruntime", device="cuda")
    with pytest.raises(OptimizationError, match="inplace=True applies to backend='torchao'"):
        optimize.quantize_int8(teacher, inplace=True)
    with pytest.raises(OptimizationError, match="already an ONNX Runtime model"):
        optimize.quantize_int8(optimize.quantize_int8(teacher))


@pytest.mark.slow
def test_int8_torchao_compiled_on_cpu(teacher, data) -> None:
    q = optimize.quantize_int8(
        teacher, backend="torchao", compile=True, example_input=data["Xt"][:64]
    )
    assert optimize.runtime_of(q) == "torchao (cpu, compiled)"
    assert abs(accuracy(q, data) - accuracy(teacher, data)) < 0.01


def test_int8_of_a_cnn_with_an_example_batch(data) -> None:
    cnn = fit(SmallCNN(), data, epochs=3)
    q = optimize.quantize_int8(cnn, example_input=data["Xt"][:8])
    assert isinstance(q, optimize.OnnxRuntimeModel)
    assert abs(accuracy(q, data) - accuracy(cnn, data)) < 0.02


@pytest.mark.gpu
def test_int8_on_cuda_is_torchao_compiled(teacher, data) -> None:
    from workbench.gpus import detect_gpus

    if not detect_gpus().count:
        pytest.skip("no GPU")
    batch = data["Xt"][:256].cuda()
    # torchao's int8 GEMMs + torch.compile, compiled on a batch of the serving size
    model = optimize.quantize_int8(copy.deepcopy(teacher).cuda(), example_input=batch)
    assert optimize.runtime_of(model) == "torchao (cuda:0, compiled)"
    with torch.no_grad():
        got = model(data["Xt"].cuda()).argmax(1).cpu()
    assert abs(float((got == data["yt"]).float().mean()) - accuracy(teacher, data)) < 0.01


def test_structured_pruning_really_shrinks_the_mlp(teacher, data) -> None:
    pruned = optimize.prune_structured(teacher, 0.5, example_input=data["Xt"][:4])
    assert [tuple(m.weight.shape) for m in pruned if isinstance(m, nn.Linear)] == [
        (128, 64),
        (128, 128),
        (10, 128),
    ]
    n0, n1 = optimize.count_parameters(teacher), optimize.count_parameters(pruned)
    assert n1 < 0.35 * n0
    assert optimize.size_on_disk(pruned) < 0.35 * optimize.size_on_disk(teacher)
    assert pruned(data["Xt"]).shape == teacher(data["Xt"]).shape
    # the kept neurons are the strongest: without retraining it still mostly works
    assert accuracy(pruned, data) > 0.5
    assert optimize.count_parameters(teacher) == n0  # the original is untouched


def test_structured_pruning_of_a_cnn_through_batchnorm_and_flatten(data) -> None:
    cnn = fit(SmallCNN(), data, epochs=3)
    assert optimize.prunable_layers(cnn) == [("c1", "c2"), ("c2", "fc"), ("fc", "out")]
    pruned = optimize.prune_structured(cnn, 0.5, example_input=data["Xt"][:4])
    assert pruned.c1.out_channels == 4 and pruned.b1.num_features == 4
    assert pruned.c2.in_channels == 4 and pruned.c2.out_channels == 8
    assert pruned.fc.in_features == 8 * 4 * 4 and pruned.fc.out_features == 16
    assert pruned.out.in_features == 16 and pruned.out.out_features == 10
    assert optimize.count_parameters(pruned) < optimize.count_parameters(cnn) / 2.5
    # removing channels with their Linear columns keeps the remaining computation intact:
    # zeroing the same channels in the original gives the same outputs
    keep_fc = set(torch.topk(cnn.fc.weight.detach().norm(dim=1), 16).indices.tolist())
    masked = SmallCNN()
    masked.load_state_dict(cnn.state_dict())
    masked.eval()
    with torch.no_grad():
        for i in range(32):
            if i not in keep_fc:
                masked.fc.weight[i] = 0
                masked.fc.bias[i] = 0
    pruned_fc_only = optimize.prune_structured(
        nn.Sequential(nn.Flatten(), masked.fc, nn.ReLU(), masked.out), 0.5
    )
    x = torch.randn(5, 256)
    torch.testing.assert_close(
        pruned_fc_only(x), nn.Sequential(masked.fc, nn.ReLU(), masked.out)(x), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(OptimizationError, match="no layer of Linear can be pruned"):
        optimize.prune_structured(nn.Linear(4, 2), 0.5)
    with pytest.raises(OptimizationError, match="amount must be between 0 and 1"):
        optimize.prune_structured(cnn, 1.5)


def test_fine_tuning_wins_back_what_pruning_cost(teacher, data) -> None:
    pruned = optimize.prune_structured(teacher, 0.5)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    events: list[Any] = []
    tuned = optimize.fine_tune(
        pruned,
        data["X"],
        data["y"],
        teacher=teacher,
        epochs=5,
        X_valid=data["Xt"],
        y_valid=data["yt"],
        callbacks=events.append,
        progress=None,
    )
    assert tuned is not pruned and all(  # a copy: the pruned model is left as it was
        torch.equal(v, before[k]) for k, v in pruned.state_dict().items()
    )
    assert optimize.count_parameters(tuned) == optimize.count_parameters(pruned)
    assert accuracy(tuned, data) > accuracy(teacher, data) - 0.01  # within a point
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 5 and {"fine-tune-loss", "valid-accuracy"} <= set(steps[-1].metrics)
    # from the labels alone, in place
    alone = optimize.prune_structured(teacher, 0.5)
    assert optimize.fine_tune(alone, data["X"], data["y"], inplace=True, progress=None) is alone
    assert accuracy(alone, data) > 0.9
    with pytest.raises(OptimizationError, match="needs labels y, or a teacher"):
        optimize.fine_tune(alone, data["X"])
    with pytest.raises(OptimizationError, match="X has 1400 rows but y has 10"):
        optimize.fine_tune(alone, data["X"], data["y"][:10])


def test_magnitude_pruning_zeroes_weights_but_keeps_shapes(teacher, data) -> None:
    sparse = optimize.prune_magnitude(teacher, 0.6)
    weights = sum(m.weight.numel() for m in sparse if isinstance(m, nn.Linear))
    zeros = sum(int((m.weight == 0).sum()) for m in sparse if isinstance(m, nn.Linear))
    assert zeros == pytest.approx(0.6 * weights, abs=1)
    assert optimize.count_parameters(sparse) == optimize.count_parameters(teacher)
    assert optimize.count_nonzero(sparse) < 0.45 * optimize.count_parameters(teacher)
    assert not any(name.endswith("_mask") for name, _ in sparse.named_buffers())
    assert accuracy(sparse, data) > accuracy(teacher, data) - 0.05


def test_distillation_gives_a_smaller_student_that_learned(teacher, data) -> None:
    events: list[Any] = []
    student = optimize.distill(
        teacher,
        data["X"],
        data["y"],
        width=0.25,
        epochs=8,
        X_valid=data["Xt"],
        y_valid=data["yt"],
        callbacks=events.append,
        progress=None,
    )
    assert optimize.count_parameters(student) < optimize.count_parameters(teacher) / 5
    assert accuracy(student, data) > 0.85
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 8 and "valid-accuracy" in steps[-1].metrics
    # a student of the user's own design, from scratch
    torch.manual_seed(1)
    own = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    trained = optimize.distill(
        teacher, data["X"], data["y"], student=own, epochs=10, lr=5e-3, progress=None
    )
    assert trained is own
    assert accuracy(own, data) > 0.8


def test_onnx_export_runs_in_onnxruntime_like_torch(teacher, data, tmp_path) -> None:
    export = optimize.export_onnx(teacher, data["Xt"][:8], tmp_path / "digits.onnx")
    assert export.path.exists() and export.size_bytes > optimize.size_on_disk(teacher) * 0.9
    assert export.max_abs_diff < 1e-4
    batch = data["Xt"][:100]  # another batch size than the example: the batch axis is dynamic
    with torch.no_grad():
        expected = teacher(batch).numpy()
    np.testing.assert_allclose(export.run(batch), expected, rtol=1e-4, atol=1e-5)
    cnn_export = optimize.export_onnx(SmallCNN().eval(), data["Xt"][:4])
    assert cnn_export.max_abs_diff < 1e-4
    with pytest.raises(OptimizationError, match="example_input must be"):
        optimize.export_onnx(teacher, data["Xt"][:4].numpy())  # type: ignore[arg-type]


def test_comparison_table(teacher, data) -> None:
    models = {
        "baseline": teacher,
        "int8": optimize.quantize_int8(teacher),
        "int8-torchao": optimize.quantize_int8(teacher, backend="torchao"),
        "pruned": optimize.prune_structured(teacher, 0.5),
    }
    table = optimize.compare(models, data["Xt"], data["yt"], batch_size=64, repeats=3)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["baseline", "int8", "int8-torchao", "pruned"]
    assert {
        "parameters",
        "nonzero_parameters",
        "size_bytes",
        "latency_ms",
        "accuracy",
        "size_ratio",
        "speedup",
        "accuracy_change",
        "runtime",
    } <= set(table.columns)
    assert list(table.columns[:5]) == [
        "parameters",
        "nonzero_parameters",
        "size_bytes",
        "latency_ms",
        "accuracy",
    ]
    assert list(table["runtime"]) == [
        "torch (cpu)",
        "onnxruntime (cpu)",
        "torchao (cpu)",
        "torch (cpu)",
    ]
    assert table.loc["baseline", "size_ratio"] == 1.0
    assert table.loc["baseline", "accuracy_change"] == 0.0
    assert table.loc["int8", "size_ratio"] > 3.0
    assert table.loc["int8", "parameters"] == table.loc["baseline", "parameters"]
    assert table.loc["int8", "accuracy"] == pytest.approx(accuracy(models["int8"], data))
    assert table.loc["pruned", "parameters"] < table.loc["baseline", "parameters"]
    assert (table["latency_ms"] > 0).all()
    assert table.loc["baseline", "accuracy"] == pytest.approx(accuracy(teacher, data))
    html = table._repr_html_()
    assert "KiB" in html and "x</td>" in html and "pt</td>" in html
    assert "ratios against <b>baseline</b>" in html
    with pytest.raises(OptimizationError, match="needs at least one model"):
        optimize.compare({}, data["Xt"])
    with pytest.raises(UnknownNameError, match="unknown metric 'f1'"):
        optimize.compare(models, data["Xt"], data["yt"], metric="f1")


def test_untrained_trainer_is_refused() -> None:
    trainer = TorchTrainer(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    for fn in (optimize.quantize_int8, optimize.prune_structured, optimize.prune_magnitude):
        with pytest.raises(NotTrainedError, match="has not been trained yet"):
            fn(trainer)
    with pytest.raises(OptimizationError, match=r"expected a torch\.nn\.Module"):
        optimize.quantize_int8("model.pt")
