"""Every manifest in deploy/k8s validates offline, and the manifests agree with each other and with Settings.

Kubernetes objects: against the API schemas that PyPI's kubernetes-validate ships, in strict mode (an unknown
field is an error, as `kubectl apply --validate=strict` makes it). KEDA's ScaledObject: against its CRD schema,
vendored beside this file (source and version in its header), made strict the same way."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from carspot.pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.30", "1.37")  # an older cluster still in support, and the newest schemas shipped
PER_WORKER_IMAGES_PER_S = 24.5  # issue 25: one single-threaded worker, detector mode, 2 cores
BACKLOG_SECONDS = 2.0  # the p95 ingest→stored target: the backlog one worker may carry


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


DOCS = _documents()


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones (Kubernetes prunes them
    silently; a typo such as ``maxReplicas`` would otherwise pass)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


KEDA_SCHEMA = _strict(yaml.safe_load((Path(__file__).parent / "keda_scaledobject_v1alpha1.yaml").read_text()))


def validate_keda(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(KEDA_SCHEMA).validate(doc)


def test_the_expected_objects_are_there() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in DOCS)
    assert kinds == [
        ("ConfigMap", "carspot-config"),
        ("Deployment", "carspot-dashboard"),
        ("Deployment", "carspot-ingest"),
        ("Deployment", "carspot-worker"),
        ("Job", "carspot-kafka-topics"),
        ("Job", "carspot-migrate"),
        ("ScaledObject", "carspot-worker"),
        ("Secret", "carspot-secrets"),
        ("Service", "carspot-dashboard"),
        ("Service", "carspot-ingest"),
    ]


@pytest.mark.parametrize(("name", "doc"), [d for d in DOCS if d[1]["kind"] != "ScaledObject"], ids=lambda v: v)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_validate_strictly(name: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_scaled_object_validates_against_kedas_crd() -> None:
    validate_keda(_one("ScaledObject"))


@pytest.mark.parametrize(
    "break_it",
    [
        lambda so: so["spec"].update(maxReplicas=6),  # a typo of maxReplicaCount
        lambda so: so["spec"].update(maxReplicaCount="6"),
        lambda so: so["spec"]["triggers"][0]["metadata"].update(lagThreshold=49),  # metadata values are strings
        lambda so: so["spec"].pop("scaleTargetRef"),
    ],
)
def test_a_broken_scaled_object_is_refused(break_it: Any) -> None:
    broken = copy.deepcopy(_one("ScaledObject"))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(broken)


def test_a_broken_deployment_is_refused() -> None:
    broken = copy.deepcopy(_one("Deployment", "carspot-worker"))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo of resources
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_config_map_and_secret_hold_only_settings_carspot_knows() -> None:
    known = {f"CARSPOT_{name.upper()}" for name in Settings.model_fields}
    for kind in ("ConfigMap", "Secret"):
        doc = _one(kind)
        keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
        assert keys <= known, f"{kind} has keys Settings does not read: {sorted(keys - known)}"
    secret = _one("Secret")["stringData"]
    secret_fields = {
        f"CARSPOT_{n.upper()}" for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
    }
    assert set(secret) == secret_fields, "every secret in the Secret, no secret in the ConfigMap"
    assert not set(_one("ConfigMap")["data"]) & secret_fields


def test_kedas_trigger_scales_the_workers_of_the_configured_group_up_to_the_partitions() -> None:
    config = _one("ConfigMap")["data"]
    scaled = _one("ScaledObject")["spec"]
    (trigger,) = scaled["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert scaled["scaleTargetRef"]["name"] == _one("Deployment", "carspot-worker")["metadata"]["name"]
    assert meta["consumerGroup"] == config["CARSPOT_CONSUMER_GROUP"] == Settings.model_fields["consumer_group"].default
    assert meta["topic"] == config["CARSPOT_POSTS_TOPIC"] == Settings.model_fields["posts_topic"].default
    assert meta["bootstrapServers"] == config["CARSPOT_KAFKA_BOOTSTRAP"]
    assert scaled["maxReplicaCount"] == int(config["CARSPOT_POSTS_PARTITIONS"]), "max replicas = partitions"
    topics_job = yaml.safe_dump(_one("Job", "carspot-kafka-topics"))
    assert '--partitions "$CARSPOT_POSTS_PARTITIONS"' in topics_job, "the topic is created with that many"
    assert int(meta["lagThreshold"]) == round(PER_WORKER_IMAGES_PER_S * BACKLOG_SECONDS)
    assert meta["allowIdleConsumers"] == "false"


def test_every_long_running_container_has_probes_resources_and_the_shared_config() -> None:
    for name in ("carspot-worker", "carspot-ingest", "carspot-dashboard"):
        (container,) = _one("Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert container.get("livenessProbe"), name
        assert container.get("readinessProbe") or container.get("startupProbe"), name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"carspot-config", "carspot-secrets"}, name


def test_a_worker_gets_one_core_and_single_threaded_models() -> None:
    (container,) = _one("Deployment", "carspot-worker")["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"] == "1"
    config = _one("ConfigMap")["data"]
    assert config["CARSPOT_CLASSIFIER_THREADS"] == config["CARSPOT_CV_THREADS"] == config["CARSPOT_BLAS_THREADS"] == "1"


def test_the_worker_probe_is_a_module_of_the_package() -> None:
    (container,) = _one("Deployment", "carspot-worker")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"][-1]
        assert "python -m carspot.pipeline.probe" in command
    assert importlib.util.find_spec("carspot.pipeline.probe") is not None
