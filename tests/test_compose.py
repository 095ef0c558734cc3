"""docker-compose.temporal.yml, read as data (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from contract import SEARCH_ATTRIBUTES
from runtime.embedded import DYNAMIC_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())


def test_stack_has_every_service() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgresql", "temporal", "temporal-setup", "temporal-ui", "worker"}


def test_ports_are_published_on_localhost_only() -> None:
    services = _compose()["services"]
    assert services["temporal"]["ports"] == ["127.0.0.1:7233:7233"]
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_server_reads_the_dynamic_config_the_embedded_server_gets() -> None:
    temporal = _compose()["services"]["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    mounted = {}
    for volume in temporal["volumes"]:
        source, target, *_ = volume.split(":")
        mounted[target] = source
    # auto-setup runs in /etc/temporal: the relative path lands in the mounted folder.
    target = "/etc/temporal/" + str(Path(path).parent)
    assert target in mounted, f"{path} is not inside a mounted folder: {temporal['volumes']}"
    config = yaml.safe_load((ROOT / mounted[target] / Path(path).name).read_text())
    assert config["history.transferProcessorMaxPollRPS"] == [{"value": 1000}]
    for key, value in DYNAMIC_CONFIG.items():  # the same settings as ./run.sh's server
        assert config[key] == [{"value": value}], key


def test_long_running_services_have_health_checks_and_start_in_order() -> None:
    services = _compose()["services"]
    for name in ("postgresql", "temporal", "temporal-ui", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert (
        services["worker"]["depends_on"]["temporal-setup"]["condition"]
        == "service_completed_successfully"
    )
    assert services["worker"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_worker_may_make_the_namespaces_bubblewrap_needs_and_nothing_more() -> None:
    worker = _compose()["services"]["worker"]
    assert set(worker["security_opt"]) == {
        "seccomp=unconfined",  # unprivileged user namespaces (Docker's seccomp profile: no)
        "apparmor=unconfined",  # mounts inside them (docker-default AppArmor: no)
        "systempaths=unconfined",  # a fresh /proc (refused while Docker masks /proc paths)
    }
    for wider in ("privileged", "cap_add", "devices", "pid", "network_mode", "userns_mode"):
        assert wider not in worker, f"the worker needs no {wider}"
    text = (ROOT / "docker-compose.temporal.yml").read_text()
    assert '"isolation": "none"' in text  # the documented alternative, and its price


def test_registered_search_attributes_are_exactly_the_ones_the_code_declares() -> None:
    command = " ".join(_compose()["services"]["temporal-setup"]["command"])
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", command))
    declared = {key.name: key.indexed_value_type.name.title() for key in SEARCH_ATTRIBUTES}
    assert registered == declared


def test_worker_image_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "worker.py"]' in dockerfile
    assert (ROOT / _compose()["services"]["worker"]["build"]["dockerfile"]).exists()


def test_the_worker_scales_and_its_replicas_share_one_payload_store() -> None:
    # `docker compose up -d --scale worker=N`: nothing that only one container may have.
    compose = _compose()
    worker = compose["services"]["worker"]
    for single in ("container_name", "hostname", "ports"):
        assert single not in worker, f"--scale worker=N cannot give every replica one {single}"
    store = worker["environment"]["SESSIONS_PAYLOAD_STORE"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    assert mounts[store] in compose["volumes"], "the payload folder is a volume they all mount"
