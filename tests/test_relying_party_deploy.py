"""The deployment files: valid YAML, pinned base images, non-root users, health checks.

Docker is not available where the tests run, so these are static checks.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML: a dev dependency

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DOCKERFILES = ["Dockerfile.attester", "Dockerfile.verifier"]
DIGEST = re.compile(r"^FROM\s+\S+@sha256:[0-9a-f]{64}(\s+AS\s+\S+)?\s*$", re.IGNORECASE)


def _instructions(path: Path) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_pins_base_by_digest_and_runs_as_non_root(name: str) -> None:
    lines = _instructions(DEPLOY / name)
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert froms, "no FROM"
    for ln in froms:
        assert DIGEST.match(ln), f"{name}: base image not pinned by digest: {ln}"
    assert len({ln.split()[1] for ln in froms}) == 1, "all stages use the same pinned base"
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users, f"{name}: no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{name}: runs as root"
    assert any(ln.upper().startswith("HEALTHCHECK ") and "/healthz" in ln for ln in lines)
    assert any("--constraint constraints.txt" in ln or "-c constraints.txt" in ln for ln in lines)
    extra = "attester" if "attester" in name else "verifier"
    assert any(f'".[{extra}]"' in ln for ln in lines), f"{name}: does not install .[{extra}]"
    text = (DEPLOY / name).read_text()
    assert "--read-only" in text and "--tmpfs /tmp" in text  # runtime notes
    assert "imagetools inspect" in text or "refresh" in text.lower()


def test_dockerfiles_share_one_base_digest() -> None:
    bases = {ln.split()[1] for n in DOCKERFILES for ln in _instructions(DEPLOY / n)
             if ln.upper().startswith("FROM ")}
    assert len(bases) == 1, bases


def test_compose_is_valid_and_hardened() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, Any] = doc["services"]
    assert set(services) == {"attester", "verifier-a", "verifier-b", "worker", "redis"}
    for name, svc in services.items():
        assert svc["read_only"] is True, name
        assert not str(svc["user"]).startswith("0"), name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        assert "ALL" in svc["cap_drop"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", [])), name
        if name != "redis":
            assert any(v.endswith(":/models:ro") for v in svc["volumes"]), name
    for name in ("attester", "verifier-a", "verifier-b"):
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"]), name
    assert services["attester"]["build"]["dockerfile"] == "deploy/Dockerfile.attester"
    assert services["verifier-a"]["build"]["dockerfile"] == "deploy/Dockerfile.verifier"
    # The attester runs one model directory; the verifier searches a folder of them by digest.
    assert "${MODEL_DIR:-../fixtures/model}:/models:ro" in services["attester"]["volumes"]
    assert "${MODELS_DIR:-../fixtures}:/models:ro" in services["verifier-a"]["volumes"]


def test_compose_replicas_share_redis_and_one_key_and_a_worker_replays() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, Any] = doc["services"]
    redis = services["redis"]
    assert re.search(r"^redis:[\w.-]+@sha256:[0-9a-f]{64}$", redis["image"]), redis["image"]
    assert "ports" not in redis  # reached on the compose network only
    assert "--appendonly" in redis["command"]  # a used nonce stays used across its restarts
    assert "redis-cli" in redis["healthcheck"]["test"]
    a, b = services["verifier-a"], services["verifier-b"]
    assert a["ports"] != b["ports"]
    for replica in (a, b):
        cmd = replica["command"]
        assert cmd[:2] == ["serve", "verifier"] and cmd[cmd.index("--workers") + 1] == "2"
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        # The same key ring, read-only, in both: one kid, and a rotation reaches both.
        key_mounts = [v for v in replica["volumes"] if "/run/secrets/bytereplay-ear" in v]
        assert key_mounts == ["${EAR_KEY_DIR:-./secrets/ear}:/run/secrets/bytereplay-ear:ro"]
        config_mount = next(v for v in replica["volumes"] if v.endswith("/verifier.json:ro"))
        assert config_mount.startswith("./config/verifier-replica.json:")
        assert cmd[cmd.index("--config") + 1] == "/etc/bytereplay/verifier.json"
    replica_config = json.loads((DEPLOY / "config" / "verifier-replica.json").read_text())
    section = replica_config["verifier"]
    assert section["store"] == "redis" and section["redis_url"].startswith("redis://redis:")
    assert section["ear_key"] == "/run/secrets/bytereplay-ear/verifier-ear.pem"
    assert section["replay_backend"] == "celery"
    assert section["broker_url"].startswith("redis://redis:")
    worker = services["worker"]
    assert worker["command"] == ["worker", "--config", "/etc/bytereplay/worker.toml"]
    assert "./config/worker.toml:/etc/bytereplay/worker.toml:ro" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert not any("secrets" in v for v in worker["volumes"])  # a worker holds no key
    worker_config = tomllib.loads((DEPLOY / "config" / "worker.toml").read_text())
    assert worker_config["replay_backend"] == "celery"
    assert worker_config["broker_url"] == section["broker_url"]


def test_k8s_worker_requests_a_gpu_and_mounts_the_model_read_only() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "replay-worker.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "ConfigMap"} <= set(kinds)
    worker_config = tomllib.loads(kinds["ConfigMap"]["data"]["worker.toml"])
    assert worker_config["replay_backend"] == "celery" and "broker_url" in worker_config
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["args"] == ["worker", "--config", "/etc/bytereplay/worker.toml"]
    assert re.search(r"@sha256:[0-9a-f]{64}$", c["image"]), c["image"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # Extended resources: the limit is what the scheduler counts; the request must match.
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    models = volumes[mounts["/models"]["name"]]
    assert models["persistentVolumeClaim"]["readOnly"] is True
    assert mounts["/etc/bytereplay"]["readOnly"] is True
    assert "configMap" in volumes[mounts["/etc/bytereplay"]["name"]]


def test_k8s_sidecar_pod_is_valid_and_hardened() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "verifier-sidecar.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert {"Pod", "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy"} <= set(kinds)
    json.loads(kinds["ConfigMap"]["data"]["config.json"])  # the embedded config is JSON
    spec = kinds["Pod"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    containers = spec["containers"] + spec.get("initContainers", [])
    names = {c["name"] for c in containers}
    assert {"app", "verifier"} <= names
    for c in containers:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert c["resources"]["limits"] and c["resources"]["requests"], c["name"]
        assert re.search(r"@sha256:[0-9a-f]{64}$", c["image"]), c["image"]
    verifier = next(c for c in containers if c["name"] == "verifier")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert verifier[probe]["httpGet"]["path"] == "/healthz", probe
    mounts = {m["mountPath"]: m for m in verifier["volumeMounts"]}
    assert "/var/lib/bytereplay" in mounts and mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/var/lib/bytereplay"]["name"]]


def test_baked_configurations_load(tmp_path: Path) -> None:
    """The configuration files the images carry are accepted by the services' loaders."""
    from bytereplay.home import Home

    home = Home.resolve(tmp_path / "home")
    attester_config = pytest.importorskip("attester.config")
    if hasattr(attester_config, "load_config"):
        cfg = attester_config.load_config(home, DEPLOY / "config" / "attester.json")
        assert cfg.model_dir == "/models"
    verifier_config = pytest.importorskip("verifier.config")
    if hasattr(verifier_config, "load"):
        vcfg = verifier_config.load(home, DEPLOY / "config" / "verifier.json")
        assert str(vcfg.model_dir) == "/models"
        sidecar = list(yaml.safe_load_all((DEPLOY / "k8s" / "verifier-sidecar.yaml").read_text()))
        cm = next(d for d in sidecar if d["kind"] == "ConfigMap")
        path = tmp_path / "sidecar.json"
        path.write_text(cm["data"]["config.json"])
        assert verifier_config.load(home, path).trust_home_ca is False
        # The replicas' configuration: everything this verifier knows loads; the replay
        # backend keys belong to the Celery backend (checked where it is built).
        replica = json.loads((DEPLOY / "config" / "verifier-replica.json").read_text())
        known = {k: v for k, v in replica["verifier"].items() if k in verifier_config.KEYS}
        path.write_text(json.dumps({"verifier": known}))
        rcfg = verifier_config.load(home, path)
        assert rcfg.store == "redis"
        assert str(rcfg.ear_key) == "/run/secrets/bytereplay-ear/verifier-ear.pem"
