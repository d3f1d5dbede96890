"""What each template renders, for the defaults and the CI values files: the behaviour users rely
on (names, probes, env contract, volumes, GPUs, secrets by reference, jobs, notes)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from k8s_tooling import CHART, container, env_of, find, one, render, render_fails

from finserve.contracts import CONFIGMAP_KEY, RoutingTable
from finserve.contracts import metrics as contract_metrics

CI = CHART / "ci"
SERVING_LABELS = {"app.kubernetes.io/instance": "finserve", "app.kubernetes.io/component": "serving"}


def serving_deployments(docs):
    return [
        d
        for d in find(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
    ]


# ---- serving Deployment ------------------------------------------------------------------------


def test_default_serving_deployment_runs_the_ray_serve_app_non_root():
    dep = one(render(), "Deployment", "finserve-serving-cpu")
    spec = dep["spec"]["template"]["spec"]
    c = container(spec, "serving")
    assert c["command"] == ["finserve", "up", "--config", "/etc/finserve/serving.yaml"]
    assert c["image"] == "finserve-serving:0.1.0"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": 8000,
        "grpc": 8081,
        "metrics": 9464,
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] >= 10000
    for ctr in spec["containers"] + spec["initContainers"]:
        sc = ctr["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    # A rolling update never drops below the ready replicas.
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_serving_env_follows_the_contract():
    c = container(one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"], "serving")
    env = env_of(c)
    assert (
        env["FINSERVE_HTTP_HOST"]["value"] == "0.0.0.0"
    )  # the code's default 127.0.0.1 is unreachable in a pod
    assert env["FINSERVE_HTTP_PORT"]["value"] == "8000" and env["FINSERVE_GRPC_PORT"]["value"] == "8081"
    assert env["FINSERVE_DATA_DIR"]["value"] == "/var/lib/finserve"
    assert env["FINSERVE_ROUTING_TABLE"]["value"] == "/etc/finserve/routing"
    assert env["FINSERVE_REGISTRY"]["value"] == "/mnt/registry"
    assert env["FINSERVE_CONFIG"]["value"] == "/etc/finserve/serving.yaml"
    # The operator's queue-depth query selects pool="<workload name>".
    assert env["FINSERVE_POOL"]["value"] == "finserve-serving-cpu"
    # The bundled Redis: password from the Secret, expanded into the URL by the kubelet.
    assert env["FINSERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "finserve-redis",
        "key": "redis-password",
    }
    assert env["FINSERVE_REDIS_URL"]["value"] == "redis://:$(FINSERVE_REDIS_PASSWORD)@finserve-redis:6379/0"
    names = list(env)
    assert names.index("FINSERVE_REDIS_PASSWORD") < names.index("FINSERVE_REDIS_URL"), (
        "$(VAR) needs VAR defined first"
    )
    assert "FINSERVE_API_KEY" not in env and "FINSERVE_MILVUS_URI" not in env


def test_cpu_kernel_variant_is_the_image_s_choice_unless_pinned():
    """serving.cpuKernels sets FINSERVE_CPU_KERNELS; unset, the engine picks from the node's CPU flags."""

    def env(*sets):
        return env_of(
            container(
                one(render(sets=sets), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"],
                "serving",
            )
        )

    assert "FINSERVE_CPU_KERNELS" not in env()
    assert env("serving.cpuKernels=avx2")["FINSERVE_CPU_KERNELS"]["value"] == "avx2"
    assert "must be one of" in render_fails("serving.cpuKernels=avx512_vnni")


def test_serving_mounts_config_routing_data_and_writable_scratch():
    spec = one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container(spec, "serving")["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["/etc/finserve/serving.yaml"]["subPath"] == "serving.yaml"
    # The routing table is mounted as a folder (no subPath), so operator writes reach the pod.
    assert "subPath" not in mounts["/etc/finserve/routing"]
    assert volumes["routing"]["configMap"] == {"name": "finserve-routing", "optional": True}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert (
        "emptyDir" in volumes[mounts["/tmp"]["name"]]
        and "emptyDir" in volumes[mounts["/var/lib/finserve"]["name"]]
    )
    assert mounts["/mnt/registry"]["readOnly"] is True
    assert volumes["registry"]["persistentVolumeClaim"]["claimName"] == "finserve-registry"


def test_model_is_converted_by_an_init_container_into_the_data_dir():
    spec = one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    init = container(spec, "model")
    assert init["command"] == ["finserve", "model", "convert"]
    assert env_of(init)["FINSERVE_DATA_DIR"]["value"] == "/var/lib/finserve"
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/var/lib/finserve", "/tmp"}
    assert (
        "initContainers"
        not in one(render(sets=("serving.modelInit=false",)), "Deployment", "finserve-serving-cpu")["spec"][
            "template"
        ]["spec"]
    )


def test_config_change_rolls_the_pods():
    a = one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["metadata"]["annotations"]
    b = one(
        render(sets=("serving.config.gateway.max_tokens_limit=256",)), "Deployment", "finserve-serving-cpu"
    )["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/config"] != b["checksum/config"]


def test_existing_data_claim_replaces_the_emptydir():
    spec = one(render(values=(CI / "jobs-values.yaml",)), "Deployment", "finserve-serving-cpu")["spec"][
        "template"
    ]["spec"]
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "finserve-data"}}


def test_serving_config_files_are_valid_serving_configs():
    """The rendered serving.yaml is what `finserve up --config` loads: it must validate."""
    from finserve.serving.config import ServingConfig

    for values in [(), (CI / "gpu-values.yaml",), (CI / "rayservice-values.yaml",)]:
        for cm in find(render(values=values), "ConfigMap"):
            if "serving.yaml" in cm.get("data", {}):
                ServingConfig.model_validate(yaml.safe_load(cm["data"]["serving.yaml"]) or {})


def test_pool_overrides_merge_over_the_shared_config():
    from finserve.serving.config import ServingConfig

    docs = render(values=(CI / "gpu-values.yaml",), sets=("serving.config.gateway.max_tokens_limit=256",))
    cpu = yaml.safe_load(one(docs, "ConfigMap", "finserve-serving-cpu")["data"]["serving.yaml"])
    gpu = yaml.safe_load(one(docs, "ConfigMap", "finserve-serving-gpu")["data"]["serving.yaml"])
    # The chart's own defaults (limits, exposure) reach every pool unchanged.
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["serving"]["config"]
    for pool in (cpu, gpu):
        assert {k: pool.pop(k) for k in ("admission", "exposure", "intent")} == chart
        assert pool.pop("auth") == {"keys_file": "/etc/finserve/auth-keys/keys.json"}  # the keys Secret
    assert cpu == {"gateway": {"max_tokens_limit": 256}}
    assert gpu == {
        "gateway": {"max_tokens_limit": 256},
        "generator": {"engine": "vllm"},
        "deployments": {"generator": {"num_gpus": 1}},
    }
    assert ServingConfig.model_validate(gpu).generator.engine == "vllm"
    assert ServingConfig.model_validate(cpu).generator.engine == "transformers"


# ---- GPU pools and autoscaling ------------------------------------------------------------------


def test_gpu_pool_requests_gpus_on_gpu_nodes_with_the_gpu_image():
    docs = render(values=(CI / "gpu-values.yaml",))
    gpu = one(docs, "Deployment", "finserve-serving-gpu")["spec"]
    pod = gpu["template"]["spec"]
    c = container(pod, "serving")
    assert c["image"] == "finserve-serving-gpu:0.1.0"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "inference", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert gpu["replicas"] == 2
    # The pool's own resources override the defaults; what it leaves out is inherited.
    assert c["resources"]["requests"]["memory"] == "16Gi"
    assert c["resources"]["limits"]["ephemeral-storage"] == "10Gi"
    cpu = one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in container(cpu, "serving")["resources"]["limits"]
    assert "tolerations" not in cpu


def test_cpu_pool_hpa_targets_its_deployment_which_leaves_replicas_to_it():
    docs = render(values=(CI / "gpu-values.yaml",))
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "finserve-serving-cpu",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 75
    assert "replicas" not in one(docs, "Deployment", "finserve-serving-cpu")["spec"]
    assert not find(render(), "HorizontalPodAutoscaler")


# ---- gateway Service ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), (CI / "gpu-values.yaml",)], ids=["defaults", "gpu"])
def test_gateway_service_selects_every_serving_pool(values):
    docs = render(values=values)
    svc = one(docs, "Service", "finserve")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "http": (8000, 8000),
        "grpc": (8081, 8081),
    }
    assert next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")["appProtocol"] == "grpc"
    selector = svc["spec"]["selector"]
    pools = serving_deployments(docs)
    assert pools
    for dep in pools:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), dep["metadata"]["name"]
    for other in find(docs, "Deployment") + find(docs, "StatefulSet"):
        if other not in pools:
            assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_node_port_for_local_clusters():
    svc = one(
        render(sets=("serving.service.type=NodePort", "serving.service.httpNodePort=30080")),
        "Service",
        "finserve",
    )
    http = next(p for p in svc["spec"]["ports"] if p["name"] == "http")
    assert svc["spec"]["type"] == "NodePort" and http["nodePort"] == 30080


# ---- routing table ------------------------------------------------------------------------------


def test_routing_configmap_is_an_empty_valid_table_kept_across_upgrades():
    cm = one(render(), "ConfigMap", "finserve-routing")
    assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    table = RoutingTable.model_validate_json(cm["data"][CONFIGMAP_KEY])
    assert table.routes == {} and table.revision == 0
    assert not find(render(sets=("routing.create=false",)), "ConfigMap", "finserve-routing")


def test_routing_configmap_name_reaches_serving_and_operator():
    docs = render(sets=("routing.configMapName=routes-a",))
    assert one(docs, "ConfigMap", "routes-a")
    pod = one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "routing")["configMap"]["name"] == "routes-a"
    op = container(one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"], "operator")
    assert env_of(op)["FINSERVE_OPERATOR__ROUTING_CONFIGMAP"]["value"] == "routes-a"


# ---- Redis, Milvus, registry, secrets ------------------------------------------------------------


def test_bundled_redis_is_a_small_authenticated_cache():
    docs = render()
    sts = one(docs, "StatefulSet", "finserve-redis")
    c = container(sts["spec"]["template"]["spec"], "redis")
    args = c["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert env_of(c)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "finserve-redis"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    secret = one(docs, "Secret", "finserve-redis")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and password.isalnum()
    assert one(docs, "Service", "finserve-redis")["spec"]["ports"][0]["port"] == 6379


def test_existing_redis_secret_is_referenced_not_generated():
    docs = render(sets=("redis.bundled.auth.existingSecret=my-redis",))
    assert [d["metadata"]["name"] for d in find(docs, "Secret")] == ["finserve-audit-key"]  # not Redis's
    c = container(one(docs, "StatefulSet", "finserve-redis")["spec"]["template"]["spec"], "redis")
    assert env_of(c)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-redis"


def test_external_backends_and_secrets_by_reference():
    docs = render(values=(CI / "external-values.yaml",))
    assert (
        not find(docs, "StatefulSet") and not find(docs, "Secret") and not find(docs, "PersistentVolumeClaim")
    )
    c = container(one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"], "serving")
    env = env_of(c)
    assert env["FINSERVE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "finserve-redis-url",
        "key": "url",
    }
    assert env["FINSERVE_MILVUS_URI"]["value"] == "http://milvus.milvus.svc:19530"
    assert env["FINSERVE_REGISTRY"]["value"] == "s3://finserve-adapters/registry"
    assert env["FINSERVE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "finserve-api-key",
        "key": "api-key",
    }
    assert c["envFrom"] == [{"secretRef": {"name": "finserve-s3-credentials"}}]
    assert "/mnt/registry" not in {m["mountPath"] for m in c["volumeMounts"]}


def test_redis_disabled_leaves_no_cache_settings():
    docs = render(sets=("redis.mode=disabled",))
    assert not find(docs, "StatefulSet")
    env = env_of(
        container(one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"], "serving")
    )
    assert "FINSERVE_REDIS_URL" not in env


@pytest.mark.parametrize(
    "values",
    [(), *[(p,) for p in sorted(CI.glob("*-values.yaml"))]],
    ids=lambda v: v[0].stem if v else "defaults",
)
def test_no_secret_material_inline(values):
    """Only the chart-generated Redis password and audit key are secret data; every other secret is a reference."""
    for doc in render(values=values):
        if doc["kind"] == "Secret":
            assert (doc["metadata"]["name"], *doc["data"]) in {
                ("finserve-redis", "redis-password"),
                ("finserve-audit-key", "key"),
            }
        text = json.dumps(doc)
        for marker in ("hunter2", "BEGIN PRIVATE KEY", 'AWS_SECRET_ACCESS_KEY": "', "password="):
            assert marker not in text
        for pod in _pod_specs(doc):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for e in c.get("env", []):
                    # *_FILE names a mounted secret's path (the Docker convention), not the secret.
                    if any(w in e["name"] for w in ("KEY", "PASSWORD", "TOKEN", "SECRET")) and not e[
                        "name"
                    ].endswith("_FILE"):
                        assert "valueFrom" in e, f"{doc['metadata']['name']}: {e['name']} is inline"


def _pod_specs(doc):
    spec = doc.get("spec", {})
    if doc["kind"] in {"Deployment", "StatefulSet"}:
        yield spec["template"]["spec"]
    elif doc["kind"] == "Job":
        yield spec["template"]["spec"]
    elif doc["kind"] == "RayService":
        cluster = spec["rayClusterConfig"]
        yield cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster["workerGroupSpecs"]:
            yield group["template"]["spec"]


@pytest.mark.parametrize("runtime", ["deployment", "rayservice"])
def test_every_serving_pod_keeps_the_audit_log_on_a_claim_with_its_signing_key(runtime):
    docs = render(sets=(f"serving.runtime={runtime}",))
    pods = [
        pod
        for doc in docs
        if doc["kind"] in {"Deployment", "RayService"}
        and doc["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
        for pod in _pod_specs(doc)
    ]
    assert pods
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            audit = volumes[mounts["/var/lib/finserve/audit"]["name"]]
            assert (
                audit["persistentVolumeClaim"] == {"claimName": "finserve-audit"} and "emptyDir" not in audit
            )
            key = volumes[mounts["/etc/finserve/audit-key"]["name"]]
            assert (
                key["secret"]["secretName"] == "finserve-audit-key"
                and mounts["/etc/finserve/audit-key"]["readOnly"]
            )
            assert env_of(c)["FINSERVE_AUDIT_KEY_FILE"]["value"] == "/etc/finserve/audit-key/key"
    pvc = one(docs, "PersistentVolumeClaim", "finserve-audit")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    secret = one(docs, "Secret", "finserve-audit-key")
    assert len(base64.b64decode(secret["data"]["key"])) >= 32
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_jobs_do_not_mount_the_audit_claim():
    for job in find(render(values=(CI / "jobs-values.yaml",)), "Job"):
        assert "audit" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}


def test_existing_audit_claim_and_key_secret_are_referenced_not_created():
    docs = render(
        sets=(
            "audit.persistence.existingClaim=bank-audit",
            "audit.checkpointKey.existingSecret=bank-key",
            "audit.checkpointKey.key=hmac",
        )
    )
    assert not [d for d in find(docs, "PersistentVolumeClaim") if d["metadata"]["name"] == "finserve-audit"]
    assert not [d for d in find(docs, "Secret") if d["metadata"]["name"] == "finserve-audit-key"]
    spec = one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["audit"]["persistentVolumeClaim"]["claimName"] == "bank-audit"
    assert volumes["audit-key"]["secret"]["secretName"] == "bank-key"
    assert (
        env_of(container(spec, "serving"))["FINSERVE_AUDIT_KEY_FILE"]["value"]
        == "/etc/finserve/audit-key/hmac"
    )


def test_registry_claim_survives_uninstall():
    pvc = one(render(), "PersistentVolumeClaim", "finserve-registry")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    claims = find(render(sets=("registry.pvc.existingClaim=adapters",)), "PersistentVolumeClaim")
    assert [c["metadata"]["name"] for c in claims] == ["finserve-audit"]


# ---- operator -----------------------------------------------------------------------------------


def test_operator_is_one_standalone_replica_recreated_on_upgrade():
    docs = render()
    dep = one(docs, "Deployment", "finserve-operator")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    c = container(dep["spec"]["template"]["spec"], "operator")
    assert c["command"] == ["finserve", "operator", "run"]
    assert c["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env_of(c)["FINSERVE_OPERATOR__PROMETHEUS__URL"]["value"].startswith("http://")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    pdb = one(docs, "PodDisruptionBudget", "finserve-operator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )


def test_operator_exposes_its_metrics_port():
    c = container(one(render(), "Deployment", "finserve-operator")["spec"]["template"]["spec"], "operator")
    assert env_of(c)["FINSERVE_OPERATOR__METRICS_PORT"]["value"] == "8090"
    assert {"name": "metrics", "containerPort": 8090, "protocol": "TCP"} in c["ports"]
    moved = container(
        one(render(sets=("operator.metricsPort=9300",)), "Deployment", "finserve-operator")["spec"][
            "template"
        ]["spec"],
        "operator",
    )
    assert env_of(moved)["FINSERVE_OPERATOR__METRICS_PORT"]["value"] == "9300"
    assert {"name": "metrics", "containerPort": 9300, "protocol": "TCP"} in moved["ports"]


def test_operator_settings_read_every_variable_the_chart_sets(caplog):
    from finserve.operator.settings import ENV_PREFIX, load_operator_config

    docs = render(
        sets=(
            "operator.prometheusUrl=http://prom.mon:9090",
            "routing.configMapName=routes-b",
            "operator.metricsPort=9301",
        )
    )
    c = container(one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"], "operator")
    env = {name: e["value"] for name, e in env_of(c).items() if "value" in e}
    assert [n for n in env if n.startswith("FINSERVE_OPERATOR")] and all(
        n.startswith(ENV_PREFIX) for n in env if n.startswith("FINSERVE_OPERATOR")
    )
    with caplog.at_level("WARNING"):
        cfg = load_operator_config(environ=env)
    assert not caplog.records  # no deprecated name left in the chart
    assert (cfg.prometheus.url, cfg.routing_configmap, cfg.metrics_port) == (
        "http://prom.mon:9090",
        "routes-b",
        9301,
    )
    assert cfg.eval_job_template == "/etc/finserve/evaluation/job.yaml"


def test_operator_serves_listed_namespaces_only():
    c = container(
        one(render(values=(CI / "jobs-values.yaml",)), "Deployment", "finserve-operator")["spec"]["template"][
            "spec"
        ],
        "operator",
    )
    assert c["args"][:2] == ["--namespace=finserve", "--namespace=finserve-canary"]
    assert "--all-namespaces" not in c["args"]


def _rollout_eval_action(golden_set):
    from finserve.contracts import AdapterRef
    from finserve.operator.core.actions import RunEvaluation
    from finserve.operator.spec import GoldenSet

    return RunEvaluation(
        job="bank-eval-traffic-0a1b2c3d-1",
        stage="BeforeTraffic",
        candidate=AdapterRef(name="banking77", version="1.1.0"),
        baseline=AdapterRef(name="banking77", version="1.0.0"),
        golden_set=GoldenSet.model_validate(golden_set),
        timeout_seconds=1800,
    )


@pytest.mark.parametrize(
    "golden_set,data",
    [
        ({"configMap": {"name": "golden", "key": "golden.csv"}}, "/var/run/finserve/golden/golden.csv"),
        (
            {"pvc": {"claimName": "eval-data", "path": "banking/golden.csv"}},
            "/var/run/finserve/golden/banking/golden.csv",
        ),
        (
            {"registry": {"adapter": "banking77-golden", "version": "1.0.0", "path": "golden.csv"}},
            "$(FINSERVE_REGISTRY)/banking77-golden/1.0.0/golden.csv",
        ),
    ],
    ids=["configmap", "pvc", "registry"],
)
def test_operator_builds_valid_eval_jobs_from_the_chart_template(golden_set, data):
    from k8s_tooling import k8s_validate

    from finserve.operator.adapters.jobs import build_job
    from finserve.operator.ports import ObjectRef

    docs = render()
    cm = one(docs, "ConfigMap", "finserve-rollout-eval-job")
    dep = one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"]
    c = container(dep, "operator")
    mount = {m["name"]: m for m in c["volumeMounts"]}["eval-job-template"]
    assert env_of(c)["FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE"]["value"] == f"{mount['mountPath']}/job.yaml"
    assert {v["name"]: v for v in dep["volumes"]}["eval-job-template"]["configMap"]["name"] == cm["metadata"][
        "name"
    ]
    template = yaml.safe_load(cm["data"]["job.yaml"])
    job = build_job(template, _rollout_eval_action(golden_set), ObjectRef("finserve", "bank", uid="u-1"))
    assert k8s_validate(job) is None, k8s_validate(job)
    pod = job["spec"]["template"]["spec"]
    ev = container(pod, "eval")
    assert ev["command"][:5] == ["finserve", "eval", "answers", "--data", data]
    assert ev["image"] == "finserve-training:0.1.0" and ev["terminationMessagePolicy"] == "File"
    assert env_of(ev)["FINSERVE_REGISTRY"]["value"] == "/mnt/registry"
    assert {m["mountPath"]: m for m in ev["volumeMounts"]}["/mnt/registry"]["readOnly"] is True
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    golden = [v for v in pod["volumes"] if v["name"] == "golden-set"]
    assert len(golden) == (0 if "registry" in golden_set else 1)


def test_eval_job_template_can_be_left_out():
    docs = render(sets=("operator.evaluationJob.enabled=false",))
    assert not find(docs, "ConfigMap", "finserve-rollout-eval-job")
    c = container(one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"], "operator")
    assert "FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE" not in env_of(c)


def test_operator_off_renders_none_of_it():
    docs = render(sets=("operator.enabled=false",))
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]


def test_readiness_probe_can_ask_grpc_health_on_the_grpc_port():
    c = container(
        one(render(sets=("serving.probes.readinessVia=grpc",)), "Deployment", "finserve-serving-cpu")["spec"][
            "template"
        ]["spec"],
        "serving",
    )
    probe = c["readinessProbe"]
    assert (
        probe["grpc"] == {"port": 8081, "service": "inference.GRPCInferenceService"}
        and "httpGet" not in probe
    )
    assert probe["periodSeconds"] == 5 and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessVia" in render_fails("serving.probes.readinessVia=tcp")


# ---- RayService ---------------------------------------------------------------------------------


def test_rayservice_serve_config_is_valid_for_ray_serve():
    from grpc_health.v1.health_pb2_grpc import add_HealthServicer_to_server
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    from finserve.serving.config import ServingConfig
    from finserve.serving.oip_grpc import ADD_SERVICER
    from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
    from finserve.serving.oip_grpc.health import ADD_HEALTH_SERVICER

    docs = render(values=(CI / "rayservice-values.yaml",))
    assert not serving_deployments(docs)
    rs = one(docs, "RayService", "finserve-serving")
    serve = ServeDeploySchema.model_validate(yaml.safe_load(rs["spec"]["serveConfigV2"]))
    (app,) = serve.applications
    assert (app.name, app.import_path, app.route_prefix) == (
        "finserve",
        "finserve.serving.app:build_app",
        "/",
    )
    assert serve.http_options.host == "0.0.0.0" and serve.http_options.port == 8000
    # Ray Serve's gRPC proxy serves OIP v2 on the chart's gRPC port, with the servicer Ray can import.
    assert serve.grpc_options.port == 8081
    assert serve.grpc_options.grpc_servicer_functions == [ADD_SERVICER, ADD_HEALTH_SERVICER]
    options = gRPCOptions(**serve.grpc_options.model_dump())
    assert options.grpc_servicer_func_callable == [
        add_GRPCInferenceServiceServicer_to_server,
        add_HealthServicer_to_server,
    ]
    ServingConfig.model_validate(app.args)
    assert app.args["deployments"]["generator"]["num_gpus"] == 1


def test_rayservice_replicas_get_the_pods_env_overrides_as_finserve_up_does(tmp_path, monkeypatch):
    """The RayService hands build_app the chart's config as `args`; FINSERVE_<SECTION>__<FIELD> variables on
    the pods (serving.extraEnv) must reach the replicas' config as they do under `finserve up`, which loads
    the same config from its file."""
    from finserve.serving.app import build_app
    from finserve.serving.config import load_serving_config

    extra = {
        "FINSERVE_GATEWAY__MAX_TOKENS_LIMIT": "200",
        "FINSERVE_GENERATOR__MAX_BATCH_SIZE": "3",
        "FINSERVE_DEPLOYMENTS__GENERATOR__NUM_REPLICAS": "2",
    }
    env_values = tmp_path / "env-values.yaml"
    env_values.write_text(
        yaml.safe_dump({"serving": {"extraEnv": [{"name": n, "value": v} for n, v in extra.items()]}})
    )
    rs = one(render(values=(CI / "rayservice-values.yaml", env_values)), "RayService", "finserve-serving")
    cluster = rs["spec"]["rayClusterConfig"]
    for pod in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        assert (
            extra.items() <= {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}.items()
        )
    (app,) = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    assert app["args"].get("gateway", {}).get("max_tokens_limit") != 200  # the override is not in the file

    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    ray_app = build_app(
        app["args"]
    )._bound_deployment  # what the RayService builds: Gateway(config, ..., generator, ...)
    gateway_config, generator = ray_app.init_args[0], ray_app.init_args[3]._bound_deployment
    assert gateway_config["gateway"]["max_tokens_limit"] == 200
    assert generator.init_args[0]["max_batch_size"] == 3 and generator.num_replicas == 2
    # ... and the same as `finserve up` with that config as its file and the same environment.
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(app["args"]))
    up = build_app(load_serving_config(path))._bound_deployment
    assert (
        up.init_args[0] == gateway_config
        and up.init_args[3]._bound_deployment.init_args == generator.init_args
    )


def test_grpc_port_reaches_rays_grpc_proxy_on_every_node():
    docs = render(values=(CI / "rayservice-values.yaml",), sets=("serving.grpcPort=9000",))
    svc = one(docs, "Service", "finserve")
    grpc_svc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    rs = one(docs, "RayService", "finserve-serving")
    assert (
        grpc_svc["targetPort"] == yaml.safe_load(rs["spec"]["serveConfigV2"])["grpc_options"]["port"] == 9000
    )
    cluster = rs["spec"]["rayClusterConfig"]
    for pod in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert ports["grpc"] == 9000


def test_rayservice_cluster_shape():
    rs = one(render(values=(CI / "rayservice-values.yaml",)), "RayService", "finserve-serving")
    cluster = rs["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]["template"]["spec"]
    assert container(head, "ray-head")["image"] == "finserve-serving:0.1.0"
    head_ports = {p["name"]: p["containerPort"] for p in container(head, "ray-head")["ports"]}
    assert (head_ports["serve"], head_ports["grpc"]) == (8000, 8081)
    (group,) = cluster["workerGroupSpecs"]
    assert (group["groupName"], group["replicas"], group["minReplicas"], group["maxReplicas"]) == (
        "gpu",
        1,
        1,
        3,
    )
    worker = container(group["template"]["spec"], "ray-worker")
    assert worker["image"] == "finserve-serving-gpu:0.1.0"
    # Every node runs a Serve proxy (HTTP and gRPC), so workers expose the gRPC port too.
    assert {p["name"]: p["containerPort"] for p in worker["ports"]}["grpc"] == 8081
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert group["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    for pod in (head, group["template"]["spec"]):
        env = env_of(pod["containers"][0])
        assert env["FINSERVE_POOL"]["value"] == "finserve-serving"  # the RayService is the pool workload
        assert env["FINSERVE_ROUTING_TABLE"]["value"] == "/etc/finserve/routing"


def test_ray_serve_switches_reach_every_ray_container():
    """Ray reads them once per process: the chart sets what `finserve up` sets (serving/serve_env.py) for
    the Python proxy, whatever `deployments.ingress` says: in a cluster the Service is the ingress, and
    HAProxy (the `finserve up` default) stays off."""
    from finserve.serving.config import DeploymentsConfig
    from finserve.serving.serve_env import serve_env

    for throughput, sets in (
        (True, ()),
        (False, ("serving.config.deployments.throughput_optimized=false",)),
        (True, ("serving.config.deployments.ingress=haproxy",)),
    ):
        rs = one(render(values=(CI / "rayservice-values.yaml",), sets=sets), "RayService", "finserve-serving")
        cluster = rs["spec"]["rayClusterConfig"]
        want = serve_env(DeploymentsConfig(throughput_optimized=throughput, ingress="proxy"))
        for pod in [
            cluster["headGroupSpec"]["template"],
            *(g["template"] for g in cluster["workerGroupSpecs"]),
        ]:
            env = env_of(pod["spec"]["containers"][0])
            for name in (
                "RAY_SERVE_THROUGHPUT_OPTIMIZED",
                "RAY_SERVE_ENABLE_DIRECT_INGRESS",
                "RAY_SERVE_ENABLE_HA_PROXY",
                "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
            ):
                assert env[name]["value"] == want[name], name


# ---- Jobs ---------------------------------------------------------------------------------------


def test_jobs_are_off_by_default():
    assert not find(render(), "Job")


def test_training_job_writes_the_registry_with_its_config():
    docs = render(values=(CI / "jobs-values.yaml",))
    job = one(docs, "Job", "finserve-train-1")
    pod = job["spec"]["template"]["spec"]
    c = container(pod, "train")
    assert c["command"] == ["finserve", "train", "--config", "/etc/finserve/training/training.yaml"]
    assert c["image"] == "finserve-training:0.1.0"
    assert yaml.safe_load(one(docs, "ConfigMap", "finserve-training")["data"]["training.yaml"]) == {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"
    }
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/mnt/registry"]["readOnly"] is False
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0


def test_training_job_defaults_to_the_repository_config_and_gpu_image():
    job = one(render(values=(CI / "gpu-values.yaml",)), "Job", "finserve-train-1")
    c = container(job["spec"]["template"]["spec"], "train")
    assert c["command"] == ["finserve", "train", "--config", "training_jobs/configs/default.yaml"]
    assert c["image"] == "finserve-training-gpu:0.1.0"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_eval_job_reports_json_on_the_held_out_file():
    job = one(render(values=(CI / "jobs-values.yaml",)), "Job", "finserve-eval-1")
    c = container(job["spec"]["template"]["spec"], "eval")
    assert c["command"] == [
        "finserve",
        "eval",
        "--data",
        "/mnt/registry/eval/banking77-validation.csv",
        "--json",
    ]
    assert {m["mountPath"]: m for m in c["volumeMounts"]}["/mnt/registry"]["readOnly"] is True


# ---- network policies -----------------------------------------------------------------------------


def _selects(policy, labels):
    return policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize(
    "values",
    [(), (CI / "rayservice-values.yaml",), (CI / "jobs-values.yaml",)],
    ids=["defaults", "rayservice", "jobs"],
)
def test_only_the_gateway_is_reachable_from_outside_the_release(values):
    docs = render(values=values)
    policies = find(docs, "NetworkPolicy")
    deny = one(docs, "NetworkPolicy", "finserve-default-deny")
    (rule,) = deny["spec"]["ingress"]
    assert rule == {"from": [{"podSelector": {"matchLabels": deny["spec"]["podSelector"]["matchLabels"]}}]}
    gateway = one(docs, "NetworkPolicy", "finserve-gateway")
    assert [p["port"] for p in gateway["spec"]["ingress"][0]["ports"]] == [8000, 8081]
    for doc in docs:
        for pod_labels in _pod_labels(doc):
            assert _selects(deny, pod_labels), f"{doc['kind']}/{doc['metadata']['name']} is not covered"
            open_to_outside = [
                p
                for p in policies
                if _selects(p, pod_labels) and p is not deny and p["metadata"]["name"] != "finserve-kuberay"
            ]
            if pod_labels.get("app.kubernetes.io/component") == "serving":
                # With a monitor on (rayservice-values), Prometheus may scrape the own /metrics port, no other.
                assert open_to_outside[0] is gateway
                assert [p["metadata"]["name"] for p in open_to_outside[1:]] in (
                    [],
                    ["finserve-serving-metrics"],
                )
                for extra in open_to_outside[1:]:
                    assert extra["spec"]["ingress"] == [{"ports": [{"port": 9464, "protocol": "TCP"}]}]
            elif pod_labels.get("app.kubernetes.io/component") == "operator" and open_to_outside:
                # With a monitor on (rayservice-values), Prometheus may scrape the operator's metrics port.
                assert [p["metadata"]["name"] for p in open_to_outside] == ["finserve-operator-metrics"]
                assert open_to_outside[0]["spec"]["ingress"] == [
                    {"ports": [{"port": 8090, "protocol": "TCP"}]}
                ]
            else:
                assert open_to_outside == [], f"{doc['metadata']['name']} is reachable from outside"


def _pod_labels(doc):
    if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
        yield doc["spec"]["template"]["metadata"]["labels"]
    elif doc["kind"] == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
        yield cluster["headGroupSpec"]["template"]["metadata"]["labels"]
        for group in cluster["workerGroupSpecs"]:
            yield group["template"]["metadata"]["labels"]


def test_kuberay_operator_may_reach_the_ray_head_dashboard():
    policy = one(render(values=(CI / "rayservice-values.yaml",)), "NetworkPolicy", "finserve-kuberay")
    assert policy["spec"]["podSelector"]["matchLabels"]["finserve.dev/ray-node"] == "head"
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}}
    ]
    assert {p["port"] for p in rule["ports"]} == {8265, 52365}


def test_gateway_sources_can_be_restricted():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    docs = render(
        sets=(
            "networkPolicy.gatewayFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=ingress-nginx",
        )
    )
    assert one(docs, "NetworkPolicy", "finserve-gateway")["spec"]["ingress"][0]["from"] == [peer]
    assert not find(render(sets=("networkPolicy.enabled=false",)), "NetworkPolicy")


# ---- monitoring ----------------------------------------------------------------------------------


def test_monitoring_is_off_by_default():
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not find(render(), "ConfigMap", "finserve-dashboard")


def test_service_monitor_scrapes_the_own_metrics_port_through_a_service_of_its_own():
    """/metrics is served on serving.metricsPort only: the metrics Service carries it, the gateway Service
    (what an Ingress or load balancer exposes) does not, and the ServiceMonitor selects the former only."""
    docs = render(values=(CI / "monitoring-values.yaml",))
    sm = one(docs, "ServiceMonitor", "finserve")
    gateway, metrics = one(docs, "Service", "finserve"), one(docs, "Service", "finserve-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert not sm["spec"]["selector"]["matchLabels"].items() <= gateway["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["finserve"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert {p["name"] for p in gateway["spec"]["ports"]} == {"http", "grpc"}
    assert (
        metrics["spec"]["selector"].items()
        <= serving_deployments(docs)[0]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not find(render(), "Service", "finserve-metrics")  # no monitor: no metrics Service


@pytest.mark.parametrize(
    "values", [(), (CHART / "ci" / "rayservice-values.yaml",)], ids=["deployment", "rayservice"]
)
def test_serving_metrics_listen_on_their_own_port_and_not_on_the_api_port(values):
    """The own listener (serving/exposure.py) binds every interface of the pod at serving.metricsPort;
    the API port answers /metrics with 404 (exposure.metrics_on_api_port off)."""
    from finserve.serving.config import ServingConfig

    docs = render(values=values, sets=("serving.metricsPort=9500",))
    pods = [
        spec
        for doc in docs
        for spec in _pod_specs(doc)
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
    ]
    assert pods
    for spec in pods:
        c = spec["containers"][0]
        env = env_of(c)
        assert (env["FINSERVE_METRICS_HOST"]["value"], env["FINSERVE_METRICS_PORT"]["value"]) == (
            "0.0.0.0",
            "9500",
        )
        assert {"name": "metrics", "containerPort": 9500} in [
            {k: p[k] for k in ("name", "containerPort")} for p in c["ports"]
        ]
    for cm in find(docs, "ConfigMap"):
        if "serving.yaml" in cm.get("data", {}):
            cfg = ServingConfig.model_validate(yaml.safe_load(cm["data"]["serving.yaml"]))
            assert cfg.exposure.metrics_on_api_port is False and cfg.exposure.docs is False


def test_serving_metrics_sources_can_be_restricted():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = render(
        values=(CI / "monitoring-values.yaml",),
        sets=(
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
        ),
    )
    (rule,) = one(docs, "NetworkPolicy", "finserve-serving-metrics")["spec"]["ingress"]
    assert rule == {"ports": [{"port": 9464, "protocol": "TCP"}], "from": [peer]}
    # The gateway policy never opens the metrics port.
    gateway_ports = {
        p["port"] for p in one(docs, "NetworkPolicy", "finserve-gateway")["spec"]["ingress"][0]["ports"]
    }
    assert gateway_ports == {8000, 8081}
    assert not find(render(), "NetworkPolicy", "finserve-serving-metrics")


@pytest.mark.parametrize(
    "values", [(), (CHART / "ci" / "rayservice-values.yaml",)], ids=["deployment", "rayservice"]
)
def test_pod_monitor_names_a_port_every_serving_pod_has(values):
    port = "metrics"
    docs = render(values=values, sets=("monitoring.podMonitor.enabled=true",))
    pm = one(docs, "PodMonitor", "finserve-serving")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == port
    for doc in docs:
        for spec, labels in zip(_pod_specs(doc), _pod_labels(doc), strict=True):
            if pm["spec"]["selector"]["matchLabels"].items() <= labels.items():
                assert port in {p["name"] for p in spec["containers"][0].get("ports", [])}, doc["metadata"][
                    "name"
                ]


@pytest.mark.parametrize("monitor", ["serviceMonitor", "podMonitor"])
def test_operator_pod_monitor_scrapes_the_operator_metrics_port(monitor):
    docs = render(
        sets=(
            f"monitoring.{monitor}.enabled=true",
            f"monitoring.{monitor}.labels.release=prom",
            f"monitoring.{monitor}.interval=15s",
        )
    )
    pm = one(docs, "PodMonitor", "finserve-operator")
    dep = one(docs, "Deployment", "finserve-operator")
    assert (
        pm["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
    assert "metrics" in {p["name"] for p in container(dep["spec"]["template"]["spec"], "operator")["ports"]}
    assert pm["metadata"]["labels"]["release"] == "prom"
    # Only the operator's metrics port opens to the outside, and only while a monitor is on.
    operator_labels = dep["spec"]["template"]["metadata"]["labels"]
    open_to_outside = [
        p
        for p in find(docs, "NetworkPolicy")
        if _selects(p, operator_labels) and p["metadata"]["name"] != "finserve-default-deny"
    ]
    assert [p["metadata"]["name"] for p in open_to_outside] == ["finserve-operator-metrics"]
    assert open_to_outside[0]["spec"]["ingress"] == [{"ports": [{"port": 8090, "protocol": "TCP"}]}]


def test_operator_metrics_sources_can_be_restricted_and_nothing_is_scraped_without_monitoring():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = render(
        values=(CI / "monitoring-values.yaml",),
        sets=(
            "networkPolicy.operatorMetricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
        ),
    )
    assert one(docs, "NetworkPolicy", "finserve-operator-metrics")["spec"]["ingress"][0]["from"] == [peer]
    plain = render()
    assert not find(plain, "PodMonitor") and not find(plain, "NetworkPolicy", "finserve-operator-metrics")
    off = render(values=(CI / "monitoring-values.yaml",), sets=("operator.enabled=false",))
    assert not find(off, "PodMonitor", "finserve-operator")


def test_dashboard_configmap_ships_the_dashboard_json():
    cm = one(render(values=(CI / "monitoring-values.yaml",)), "ConfigMap", "finserve-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["finserve.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "finserve.json").read_text())


def test_contract_metric_names_are_what_the_chart_assumes():
    # The alerts, dashboard and samples spell these names; a rename in contracts must reach them.
    assert contract_metrics.REQUESTS_TOTAL == "finserve_requests_total"
    assert contract_metrics.REQUEST_DURATION == "finserve_request_duration_seconds"
    assert contract_metrics.PII_FINDINGS_TOTAL == "finserve_pii_findings_total"


# ---- auth --------------------------------------------------------------------------------------------


def test_auth_values_reach_the_serving_config_and_mount_the_keys_secret():
    """The chart's auth values render into serving.yaml's `auth` (a valid AuthConfig) and the keys Secret
    and JWKS ConfigMap are mounted as folders (the kubelet then updates them in place)."""
    from finserve.serving.config import ServingConfig

    docs = render(
        sets=(
            "serving.auth.keys.existingSecret=finserve-keys",
            "serving.auth.jwt.jwksConfigMap=idp-jwks",
            "serving.auth.jwt.issuer=https://idp.bank.example",
            "serving.auth.jwt.audience=finserve",
            "serving.auth.jwt.tenantsClaim=fs_tenants",
        )
    )
    cfg = ServingConfig.model_validate(
        yaml.safe_load(one(docs, "ConfigMap", "finserve-serving-cpu")["data"]["serving.yaml"])
    )
    assert cfg.auth.keys_file == "/etc/finserve/auth-keys/keys.json"
    assert cfg.auth.jwt.jwks_file == "/etc/finserve/jwks/jwks.json" and cfg.auth.jwt.jwks_url is None
    assert (cfg.auth.jwt.issuer, cfg.auth.jwt.audience, cfg.auth.jwt.tenants_claim) == (
        "https://idp.bank.example",
        "finserve",
        "fs_tenants",
    )
    spec = one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["auth-keys"]["secret"]["secretName"] == "finserve-keys"
    assert volumes["jwks"]["configMap"]["name"] == "idp-jwks"
    mounts = {m["name"]: m for m in container(spec, "serving")["volumeMounts"]}
    assert mounts["auth-keys"] == {
        "name": "auth-keys",
        "mountPath": "/etc/finserve/auth-keys",
        "readOnly": True,
    }
    assert "subPath" not in mounts["jwks"]


def _auth(docs, name="finserve-serving-cpu"):
    return yaml.safe_load(one(docs, "ConfigMap", name)["data"]["serving.yaml"]).get("auth")


def test_no_authentication_needs_the_installers_consent_and_jwt_needs_issuer_and_audience():
    refused = "refusing to serve the API without authentication"
    # The chart's defaults name no credential source: refused, with what to set.
    err = render_fails(auth=())
    assert (
        refused in err
        and "serving.auth.allowUnauthenticated=true" in err
        and "serving.auth.keys.existingSecret" in err
    )
    # mode none is refused even beside a keys Secret, and so is a pool that turns auth off.
    assert refused in render_fails("serving.auth.mode=none")
    assert refused in render_fails("serving.pools[0].name=cpu", "serving.pools[0].config.auth.mode=none")
    assert refused in render_fails("serving.config.auth.mode=none")
    # Consent: `none`, said explicitly (finserve up would otherwise listen on loopback only, which no Service
    # or probe reaches).
    assert _auth(render(sets=("serving.auth.allowUnauthenticated=true",), auth=())) == {"mode": "none"}
    docs = render(sets=("serving.auth.mode=none", "serving.auth.allowUnauthenticated=true"), auth=())
    assert _auth(docs) == {"mode": "none"}
    # Any credential source is enough without consent: auto stays auto (finserve turns auth on).
    assert _auth(render(sets=("serving.apiKey.existingSecret=api",), auth=())) is None
    with pytest.raises(Exception, match="issuer is needed"):
        render(sets=("serving.auth.jwt.jwksUrl=https://idp.bank.example/certs",), auth=())


# ---- logs and tracing ----------------------------------------------------------------------------


def _serving_and_operator_env(docs):
    serving = env_of(
        container(one(docs, "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"], "serving")
    )
    operator = env_of(
        container(one(docs, "Deployment", "finserve-operator")["spec"]["template"]["spec"], "operator")
    )
    return serving, operator


def test_logs_are_json_and_tracing_is_off_by_default():
    for env in _serving_and_operator_env(render()):
        assert (
            env["FINSERVE_LOG_FORMAT"]["value"] == "json" and env["RAY_SERVE_LOG_ENCODING"]["value"] == "JSON"
        )
        assert env["OTEL_TRACES_EXPORTER"]["value"] == "none" and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


def test_tracing_points_every_process_at_the_collector(tmp_path):
    values = tmp_path / "tracing.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "logging": {"format": "text"},
                "tracing": {
                    "enabled": True,
                    "otlpEndpoint": "http://otel-collector.obs:4318",
                    "samplingRatio": 0.25,
                },
            }
        )
    )
    docs = render(values=(values,))
    for env in _serving_and_operator_env(docs):
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.obs:4318"
        assert (
            env["OTEL_TRACES_EXPORTER"]["value"] == "otlp"
            and env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"
        )
        assert (
            env["FINSERVE_LOG_FORMAT"]["value"] == "text" and env["RAY_SERVE_LOG_ENCODING"]["value"] == "TEXT"
        )
    assert "format" in render_fails("logging.format=yaml")


# ---- provider API keys ---------------------------------------------------------------------------


def _providers_values(tmp_path, secrets):
    values = tmp_path / "providers.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "serving": {
                    "providerSecrets": secrets,
                    "config": {
                        "generator": {
                            "providers": [
                                {"name": "local", "engine": "local"},
                                {
                                    "name": "hosted",
                                    "engine": "openai",
                                    "openai": {
                                        "base_url": "https://llm.bank.example/v1",
                                        "api_key_file": "/etc/finserve/providers/hosted/api-key",
                                        "default_model": "bank-llm",
                                    },
                                },
                            ]
                        }
                    },
                }
            }
        )
    )
    return values


@pytest.mark.parametrize("values", [(), (CI / "rayservice-values.yaml",)], ids=["deployment", "rayservice"])
def test_provider_api_keys_are_mounted_from_secrets_where_the_config_reads_them(tmp_path, values):
    """An `engine: openai` provider's key comes from an existing Secret mounted read-only as a folder in every
    serving container, at the path its api_key_file names (serving/inference/openai_engine.read_api_key)."""
    from finserve.serving.config import ServingConfig

    docs = render(
        values=(*values, _providers_values(tmp_path, [{"name": "hosted", "existingSecret": "llm-key"}]))
    )
    cms = [cm for cm in find(docs, "ConfigMap") if "serving.yaml" in cm.get("data", {})]
    assert cms
    for cm in cms:
        cfg = ServingConfig.model_validate(yaml.safe_load(cm["data"]["serving.yaml"]))
        assert cfg.generator.providers[1].openai.api_key_file == "/etc/finserve/providers/hosted/api-key"
    pods = [
        spec
        for doc in docs
        for spec in _pod_specs(doc)
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
    ]
    assert pods
    for spec in pods:
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["provider-hosted"]["secret"] == {"secretName": "llm-key", "defaultMode": 0o400}
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["provider-hosted"] == {
            "name": "provider-hosted",
            "mountPath": "/etc/finserve/providers/hosted",
            "readOnly": True,
        }  # a folder: a rotated Secret reaches the pod
    # Jobs never get the provider keys.
    for job in find(docs, "Job"):
        assert not any(v["name"].startswith("provider-") for v in job["spec"]["template"]["spec"]["volumes"])


def test_a_provider_key_file_no_secret_mounts_fails_the_render(tmp_path):
    err = render_fails(values=(_providers_values(tmp_path, []),))
    assert 'provider "hosted" reads its API key from /etc/finserve/providers/hosted/api-key' in err
    assert "serving.providerSecrets" in err
    twice = [{"name": "hosted", "existingSecret": "a"}, {"name": "hosted", "existingSecret": "b"}]
    assert "used twice" in render_fails(values=(_providers_values(tmp_path, twice),))
    assert not [
        v
        for v in one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]["volumes"]
        if v["name"].startswith("provider-")
    ]


def test_serving_pods_get_time_to_drain_and_the_rayservice_head_drains_first():
    """`finserve up` drains on SIGTERM itself; a RayService's head runs `finserve drain` as its preStop hook (its
    end is the cluster's), and every pod's grace period holds the drain (serving.config.drain.grace_s) and Ray's
    shutdown, or the render fails."""
    deployment = one(render(), "Deployment", "finserve-serving-cpu")["spec"]["template"]["spec"]
    assert deployment["terminationGracePeriodSeconds"] == 60
    assert container(deployment, "serving")["command"][:2] == ["finserve", "up"]
    rs = one(render(values=(CI / "rayservice-values.yaml",)), "RayService", "finserve-serving")
    cluster = rs["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    assert container(head, "ray-head")["lifecycle"] == {
        "preStop": {"exec": {"command": ["finserve", "drain"]}}
    }
    for pod in (head, *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])):
        assert pod["terminationGracePeriodSeconds"] == 60
    # The head's preStop has drained the cluster: Ray's own SIGTERM node drain would only move replicas around.
    assert env_of(container(head, "ray-head"))["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"]["value"] == "0"


def test_a_worker_pod_deleted_alone_is_drained_by_ray_within_its_grace_period():
    """A worker's `ray start --block` drains its node on SIGTERM (Ray Serve moves its replicas, which finish their
    requests within the Gateway's graceful_shutdown_timeout_s = drain.grace_s, and takes its proxy out): the
    chart gives that drain the pod's grace period but 10 s, which holds the replicas' grace, and adds no preStop
    of its own (one flagging this node's Gateway replicas would not stop Ray's routers sending to them)."""
    for period, grace in ((60, 15), (90, 40)):
        sets = (f"serving.terminationGracePeriodSeconds={period}", f"serving.config.drain.grace_s={grace}")
        rs = one(render(values=(CI / "rayservice-values.yaml",), sets=sets), "RayService", "finserve-serving")
        groups = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        assert groups
        for group in groups:
            pod = group["template"]["spec"]
            worker = container(pod, "ray-worker")
            ray_drain = float(env_of(worker)["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"]["value"])
            assert ray_drain == period - 10 and grace <= ray_drain < pod["terminationGracePeriodSeconds"]
            assert "lifecycle" not in worker
    for values in ((), (CI / "rayservice-values.yaml",)):
        assert "must fit serving.terminationGracePeriodSeconds" in render_fails(
            "serving.config.drain.grace_s=46", values=values
        )
        assert render(
            values=values,
            sets=("serving.config.drain.grace_s=10", "serving.terminationGracePeriodSeconds=25"),
        )
