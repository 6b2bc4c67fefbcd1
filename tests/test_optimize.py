"""Model optimization on a small trained digits classifier: the claims are checked, not timed."""

from __future__ import annotations

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


def test_int8_quantization_is_smaller_and_keeps_accuracy(teacher, data) -> None:
    q = optimize.quantize_int8(teacher)
    assert type(q[0].weight).__module__.startswith("torchao")  # torchao int8 tensors
    assert isinstance(teacher[0].weight, nn.Parameter)  # the original is untouched
    assert optimize.size_on_disk(teacher) / optimize.size_on_disk(q) > 3.0
    assert abs(accuracy(q, data) - accuracy(teacher, data)) < 0.02
    weight_only = optimize.quantize_int8(teacher, mode="weight_only")
    assert optimize.size_on_disk(weight_only) < optimize.size_on_disk(teacher) / 3
    with pytest.raises(OptimizationError, match="mode must be"):
        optimize.quantize_int8(teacher, mode="int4")
    with pytest.raises(OptimizationError, match=r"no nn\.Linear layers"):
        optimize.quantize_int8(nn.Sequential(nn.Conv2d(1, 2, 3)))


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
        "pruned": optimize.prune_structured(teacher, 0.5),
    }
    table = optimize.compare(models, data["Xt"], data["yt"], batch_size=64, repeats=3)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["baseline", "int8", "pruned"]
    assert {
        "parameters",
        "nonzero_parameters",
        "size_bytes",
        "latency_ms",
        "accuracy",
        "size_ratio",
        "speedup",
        "accuracy_change",
    } <= set(table.columns)
    assert table.loc["baseline", "size_ratio"] == 1.0
    assert table.loc["baseline", "accuracy_change"] == 0.0
    assert table.loc["int8", "size_ratio"] > 3.0
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
