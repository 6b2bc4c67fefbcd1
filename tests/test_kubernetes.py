"""The kubernetes backend.

No Kubernetes runs on this machine (nor in CI). What is tested for real:

- the DaskCluster resource ``create_cluster`` submits, built by ``cluster_spec()``, against
  the dask-kubernetes operator's own helpers (make_cluster_spec / make_worker_spec /
  make_scheduler_spec), and validated against the operator's CRD schema with the real
  Kubernetes PodSpec/ServiceSpec JSON schemas (kubernetes-validate, strict: unknown
  fields are errors);
- an unreachable API server, one that never answers, and a missing kubeconfig, each
  through ``workbench.launch`` with a real kubeconfig and real sockets.

Creating pods, scaling, adapting and deleting are tested in tests/test_contract.py against
a STAND-IN of the API server and the operator (tests/_kube_standin.py): no Kubernetes runs
here, but the scheduler and workers it starts are real Dask processes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import workbench
from workbench.clusters.kubernetes import GPU_TOLERATION, KubernetesBackend
from workbench.clusters.kubernetes_options import DASK_IMAGE, RAPIDS_IMAGE, KubernetesOptions
from workbench.errors import BackendError, ProfileError, ServiceUnreachableError

from ._kube_standin import KubeStandIn

dk = pytest.importorskip("dask_kubernetes.operator")


def backend(**options: Any) -> KubernetesBackend:
    return KubernetesBackend(KubernetesOptions(**options), profile="kube")


# -- the operator's CRD schema, with real Kubernetes schemas for its PodSpec/ServiceSpec ----
@pytest.fixture(scope="module")
def crd_validator() -> Any:
    import dask_kubernetes
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    latest = max(
        (p for p in schemas.glob("v*-local-strict")),
        key=lambda p: tuple(int(x) for x in p.name[1:].split("-")[0].split(".")),
    )
    k8s = json.loads((latest / "_definitions.json").read_text())
    templates = Path(dask_kubernetes.__file__).parent / "operator/customresources/templates.yaml"
    dask_defs = yaml.safe_load(templates.read_text())["definitions"]

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("python://"):
                _, _, name = ref.partition("#/definitions/")
                # Operator definitions stay local; PodSpec/ServiceSpec are Kubernetes' own.
                local = name.startswith("dask.")
                target = f"#/$defs/{name}" if local else f"{k8s['$id']}#/$defs/{name}"
                return {**{k: rewrite(v) for k, v in node.items() if k != "$ref"}, "$ref": target}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    schema_defs = rewrite(dask_defs)
    registry = Registry().with_resource(k8s["$id"], Resource.from_contents(k8s))

    def validator(kind: str) -> Any:
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": schema_defs,
            "$ref": f"#/$defs/dask.k8s.api.v1.{kind}",
        }
        return jsonschema.Draft202012Validator(schema, registry=registry)

    return validator


def test_schema_validation_catches_mistakes(crd_validator) -> None:
    spec = backend(name="wb-check").cluster_spec()
    assert not list(crd_validator("DaskCluster").iter_errors(spec))
    bad = copy.deepcopy(spec)
    bad["spec"]["worker"]["spec"]["nodeSelectors"] = {"a": "b"}  # typo: not a PodSpec field
    assert list(crd_validator("DaskCluster").iter_errors(bad))
    bad = copy.deepcopy(spec)
    bad["spec"]["worker"]["spec"]["tolerations"] = [{"key": "x", "effects": "NoSchedule"}]
    assert list(crd_validator("DaskCluster").iter_errors(bad))


def test_cpu_profile_is_the_operators_own_spec(crd_validator) -> None:
    b = backend(
        name="wb-cpu",
        n_workers=3,
        env={"EXTRA": "1"},
        worker={"cores": 2, "memory": "8GiB"},
        scheduler={"cores": 1, "memory": "2GiB"},
    )
    spec = b.cluster_spec()
    worker_resources = {
        "limits": {"cpu": "2", "memory": "8Gi"},
        "requests": {"cpu": "2", "memory": "8Gi"},
    }
    expected_worker = dk.make_worker_spec(
        image=DASK_IMAGE,
        n_workers=3,
        resources=worker_resources,
        env={"EXTRA": "1"},
        worker_command="dask worker",
    )
    expected_scheduler = dk.make_scheduler_spec(
        cluster_name="wb-cpu",
        env={"EXTRA": "1"},
        resources={
            "limits": {"cpu": "1", "memory": "2Gi"},
            "requests": {"cpu": "1", "memory": "2Gi"},
        },
        image=DASK_IMAGE,
    )
    # The one deliberate change: the `dask` CLI (distributed no longer ships dask-scheduler).
    args = expected_scheduler["spec"]["containers"][0]["args"]
    assert args[0] == "dask-scheduler"
    args[:1] = ["dask", "scheduler"]
    assert spec["spec"]["worker"] == expected_worker
    assert spec["spec"]["scheduler"] == expected_scheduler
    frame = dk.make_cluster_spec(name="wb-cpu", image=DASK_IMAGE, n_workers=3, env={"EXTRA": "1"})
    for part in (spec, frame):
        part["spec"].pop("worker")
        part["spec"].pop("scheduler")
    assert spec == frame
    assert not list(crd_validator("DaskCluster").iter_errors(b.cluster_spec()))


def test_gpu_profile_adds_gpus_placement_and_rapids_image(crd_validator) -> None:
    selector = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    b = backend(
        name="wb-gpu",
        n_workers=2,
        worker={"gpus": 1, "cores": 8, "memory": "48GiB", "node_selector": selector},
        scheduler={"cores": 1, "memory": "4GiB", "node_selector": {"pool": "cpu"}},
        worker_groups={"cpu": {"n_workers": 2, "cores": 4, "memory": "16GiB"}},
    )
    spec = b.cluster_spec()
    assert not list(crd_validator("DaskCluster").iter_errors(spec))

    worker = spec["spec"]["worker"]
    helper = dk.make_worker_spec(
        image=RAPIDS_IMAGE,
        n_workers=2,
        resources={
            "limits": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": 1},
            "requests": {"cpu": "8", "memory": "48Gi"},
        },
        env={},
        worker_command="dask cuda worker",
    )
    pod = dict(worker["spec"])
    assert pod.pop("nodeSelector") == selector
    assert pod.pop("tolerations") == [GPU_TOLERATION]
    assert {**worker, "spec": pod} == helper  # everything else is the helper's

    scheduler = spec["spec"]["scheduler"]["spec"]
    (container,) = scheduler["containers"]
    assert container["image"] == RAPIDS_IMAGE  # same software as the workers
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert "tolerations" not in scheduler  # so tainted GPU nodes repel it
    assert scheduler["nodeSelector"] == {"pool": "cpu"}
    (preference,) = scheduler["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preference["preference"]["matchExpressions"] == [
        {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}
    ]

    (name, group), *_ = b.worker_group_specs().items()
    assert name == "cpu" and group["replicas"] == 2
    (gcontainer,) = group["spec"]["containers"]
    assert gcontainer["args"][:2] == ["dask", "worker"] and gcontainer["image"] == RAPIDS_IMAGE
    assert "tolerations" not in group["spec"]
    assert gcontainer["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    assert not list(crd_validator("DaskWorker").iter_errors(group))
    assert b.describe()["gpu_names"] == ["1 x nvidia.com/gpu per worker"]


def test_explicit_image_and_tolerations_win(crd_validator) -> None:
    own = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "l4", "effect": "NoSchedule"}
    b = backend(
        name="wb-own",
        image="registry.example/rapids:26.02",
        worker={"gpus": 2, "tolerations": [own], "worker_command": ["dask", "cuda", "worker"]},
    )
    spec = b.cluster_spec()
    pod = spec["spec"]["worker"]["spec"]
    assert pod["tolerations"] == [own]  # no second, broader GPU toleration
    assert pod["containers"][0]["image"] == "registry.example/rapids:26.02"
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert not list(crd_validator("DaskCluster").iter_errors(spec))


def test_cluster_names_are_filled_in_and_checked() -> None:
    b = backend()
    assert b.cluster_name.startswith("workbench-") and b.cluster_name == b.cluster_name
    assert b.cluster_spec()["metadata"]["name"] == b.cluster_name
    with pytest.raises(ProfileError, match="not valid for Kubernetes"):
        _ = backend(name="My_Cluster").cluster_name


def test_bad_kubernetes_options_are_profile_errors(user_profiles) -> None:
    user_profiles(
        "profiles:\n  kube:\n    backend: kubernetes\n    options:\n"
        "      worker:\n        gpus: -1\n        memory: plenty\n        nodeSelector: {a: b}\n"
        "      worker_groups:\n        Default: {n_workers: 1}\n"
    )
    with pytest.raises(ProfileError) as exc:
        workbench.launch("kube")
    message = str(exc.value)
    assert "profiles.yaml:6: profile 'kube': key 'options.worker.gpus'" in message
    assert "profiles.yaml:7: profile 'kube': key 'options.worker.memory'" in message
    assert "profiles.yaml:8: profile 'kube': key 'options.worker.nodeSelector': unknown" in message
    assert "worker group name 'Default'" in message


# -- unreachable API server, missing configuration: real kubeconfigs and sockets -------------
def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "dask"}}
                ],
                "current-context": "ctx",
            }
        )
    )
    return path


KUBE_PROFILE = "profiles:\n  kube:\n    backend: kubernetes\n    options: {n_workers: 1}\n"


def test_unreachable_api_server_is_a_clear_error(
    user_profiles, tmp_path: Path, closed_port: int
) -> None:
    user_profiles(KUBE_PROFILE)
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{closed_port}")
    with pytest.raises(ServiceUnreachableError) as exc:
        workbench.launch("kube", kubeconfig=str(config))
    assert f"cannot reach the Kubernetes API server at https://127.0.0.1:{closed_port}" in str(
        exc.value
    )
    assert str(config) in str(exc.value)


def test_api_server_that_never_answers_times_out(
    user_profiles, tmp_path: Path, silent_server: str
) -> None:
    user_profiles(KUBE_PROFILE)
    config = kubeconfig(tmp_path, f"https://{silent_server}")
    with pytest.raises(ServiceUnreachableError, match="did not answer within 1s"):
        workbench.launch("kube", kubeconfig=str(config), connect_timeout=1)


def test_missing_kubeconfig_is_a_clear_error(
    user_profiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    user_profiles(KUBE_PROFILE)
    with pytest.raises(BackendError, match=r"no usable Kubernetes configuration in .*no-such"):
        workbench.launch("kube")


# -- the user's code path up to the operator: the stand-in API server, no operator --------
@pytest.mark.slow
def test_launch_submits_cluster_spec_and_reports_a_missing_operator(
    user_profiles, tmp_path: Path, kube_api_only: KubeStandIn
) -> None:
    """A STAND-IN API server (tests/_kube_standin.py) with no operator: nothing ever gives
    the DaskCluster a status, as when the operator is not installed."""
    fake_kube_api = kube_api_only
    options = {
        "name": "wb-fake",
        "n_workers": 2,
        "worker": {"gpus": 1, "node_selector": {"pool": "gpu"}},
        "resource_timeout": 2,
    }
    user_profiles(
        yaml.safe_dump({"profiles": {"kube": {"backend": "kubernetes", "options": options}}})
    )
    config = fake_kube_api.kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(ServiceUnreachableError) as exc:
        workbench.launch("kube", kubeconfig=str(config))
    assert "operator did not act on DaskCluster wb-fake within 2s" in str(exc.value)

    collection = "/apis/kubernetes.dask.org/v1/namespaces/dask/daskclusters"
    assert ("POST", collection) in fake_kube_api.requests
    # What the user's launch POSTed is exactly what cluster_spec() (tested above) builds ...
    (posted,) = fake_kube_api.posted
    assert posted["metadata"].pop("namespace", "dask") == "dask"
    assert posted == backend(**options).cluster_spec()
    # ... and it was deleted again when the operator did not answer.
    assert ("DELETE", f"{collection}/wb-fake") in fake_kube_api.requests
    assert fake_kube_api.objects == {}


def test_idle_timeout_reaches_the_operator_as_a_backstop() -> None:
    """The handle closes an idle cluster after idle_timeout, counted from its first worker;
    the operator, which counts from the scheduler's start, gets at least 5 minutes so that
    it never deletes a cluster whose pods are still being scheduled."""
    from workbench.clusters.kubernetes import OPERATOR_IDLE_MIN_S

    assert backend(name="wb-idle").cluster_spec()["spec"]["idleTimeout"] == 0
    short = backend(name="wb-idle", idle_timeout=4).cluster_spec()
    assert short["spec"]["idleTimeout"] == OPERATOR_IDLE_MIN_S
    assert backend(name="wb-idle", idle_timeout=900).cluster_spec()["spec"]["idleTimeout"] == 900
