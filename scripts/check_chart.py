"""Check the Helm chart charts/panka offline: schema, `helm lint`, rendered manifests.

Run by scripts/check-chart (part of scripts/test) with the project's .venv, where scripts/setup
installs scripts/requirements-chart.txt (helm-sdkpy: Helm's Go library behind a C ABI, so no
`helm` binary is needed). For the chart's default values and for every charts/panka/ci/*-values.yaml:

1. the values, merged onto the chart's defaults as Helm merges them, are validated against
   values.schema.json (jsonschema, draft 7), so a schema error names the value;
2. `helm lint` (helm-sdkpy's Lint) runs on a copy of the chart whose values.yaml holds those
   merged values; any message of warning or error severity fails the check (strict). helm-sdkpy
   returns most lint messages without their text (Go error values serialise as {}), so the
   render step below is what explains a template error;
3. the templates are rendered with Helm's own install action against a stand-in API server on
   127.0.0.1 (helm-sdkpy has no `template` action; the stand-in answers discovery and stores
   what is created; nothing leaves the machine) and written to target/chart/<name>.yaml;
4. facts every install must hold are checked in the rendered objects (non-root, read-only root
   filesystem, no access to secrets, ClusterRole only across all namespaces, ...), and facts
   per values file (a StatefulSet of three shards with PANKA_SHARD=ordinal/3, ...).

Then values that must be refused are tried, and the check fails unless each is refused with the
expected message (the chart's `fail` messages and the schema).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "panka"
OUT = ROOT / "target" / "chart"
NAMESPACE = "panka-system"
RELEASE = "panka"

# helm lint severities (helm.sh/helm/v4/pkg/chart/v2/lint/support).
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


# --------------------------------------------------------------------------------------------
# Values


def merge_values(base: Any, override: Any) -> Any:
    """Helm's coalescing for user values: maps merge key by key, anything else replaces, and
    null removes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(values: dict) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]


# --------------------------------------------------------------------------------------------
# A stand-in Kubernetes API server: just enough for Helm's install action (discovery, create,
# get, list, update) to run to the end, so Helm renders the chart exactly as it would for a
# cluster. Objects live in memory for one render.


def _crd_resources() -> list[tuple[str, str, str, str, bool]]:
    """(group, version, plural, kind, namespaced) of every CRD the chart ships."""
    out = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                out.append(
                    (
                        spec["group"],
                        version["name"],
                        spec["names"]["plural"],
                        spec["names"]["kind"],
                        spec["scope"] == "Namespaced",
                    )
                )
    return out


BUILTIN_RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "secrets", "Secret", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "services", "Service", True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "pods", "Pod", True),
    ("", "v1", "events", "Event", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("apps", "v1", "statefulsets", "StatefulSet", True),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ("coordination.k8s.io", "v1", "leases", "Lease", True),
    ("events.k8s.io", "v1", "events", "Event", True),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True),
]


class FakeApiServer:
    def __init__(self) -> None:
        self.resources = BUILTIN_RESOURCES + _crd_resources()
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.lock = threading.Lock()
        self.unexpected: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add 40 ms to every request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                try:
                    code, body = server.handle(method, self.path, self._body())
                except Exception as err:  # a bug here must show, not hang Helm
                    code, body = 500, status(500, "InternalError", repr(err))
                self._reply(code, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "FakeApiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
                "users": [{"name": "stand-in", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {
                        "name": "stand-in",
                        "context": {"cluster": "stand-in", "user": "stand-in", "namespace": NAMESPACE},
                    }
                ],
                "current-context": "stand-in",
            }
        )

    # -- discovery --------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for group, version, *_ in self.resources:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)
        return groups

    def _resource_list(self, group: str, version: str) -> dict | None:
        items = [r for r in self.resources if r[0] == group and r[1] == version]
        if not items:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
                for (_, _, plural, kind, namespaced) in items
            ],
        }

    # -- requests ---------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and parts == ["version"]:
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
        if method == "GET" and parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if method == "GET" and parts == ["apis"]:
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in self._group_versions().items()
            ]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if parts and parts[0] in ("openapi", "swagger.json"):
            return 404, status(404, "NotFound", "no OpenAPI document in the stand-in server")

        # /api/v1/... or /apis/GROUP/VERSION/...
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            self.unexpected.append(f"{method} {raw_path}")
            return 404, status(404, "NotFound", f"unknown path {url.path}")
        if not rest:
            found = self._resource_list(group, version)
            return (200, found) if found else (404, status(404, "NotFound", "no such group"))
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else "")
        resource = next((r for r in self.resources if r[:3] == (group, version, plural)), None)
        if resource is None or len(rest) > 2:
            self.unexpected.append(f"{method} {raw_path}")
            return 404, status(404, "NotFound", f"unknown resource {url.path}")
        kind = resource[3]
        api_version = f"{group}/{version}" if group else version
        key = (api_version, namespace, plural, name)

        with self.lock:
            if method == "GET" and not name:
                if query.get("watch"):
                    self.unexpected.append(f"{method} {raw_path}")
                    return 405, status(405, "MethodNotAllowed", "the stand-in server cannot watch")
                items = [
                    o
                    for (av, ns, pl, _), o in self.objects.items()
                    if av == api_version and pl == plural and (not namespace or ns == namespace)
                    and matches(o, query.get("labelSelector", [""])[0])
                ]
                return 200, {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }
            if method == "GET":
                found = self.objects.get(key)
                return (200, found) if found else (404, status(404, "NotFound", f'{plural} "{name}" not found'))
            if method == "POST" and not name:
                obj = dict(body or {})
                meta = obj.setdefault("metadata", {})
                key = (api_version, namespace, plural, meta.get("name", ""))
                if key in self.objects:
                    return 409, status(409, "AlreadyExists", f'{plural} "{meta.get("name")}" already exists')
                if namespace:
                    meta["namespace"] = namespace
                meta.update(uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp=now())
                if kind == "CustomResourceDefinition":
                    obj["status"] = {
                        "conditions": [
                            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                        ],
                        "acceptedNames": obj.get("spec", {}).get("names", {}),
                        "storedVersions": [v["name"] for v in obj.get("spec", {}).get("versions", [])],
                    }
                self.objects[key] = obj
                return 201, obj
            if method in ("PUT", "PATCH") and name:
                current = self.objects.get(key)
                if current is None:
                    return 404, status(404, "NotFound", f'{plural} "{name}" not found')
                obj = dict(body or {}) if method == "PUT" else merge_values(current, body or {})
                obj.setdefault("metadata", {})["resourceVersion"] = str(
                    int(current["metadata"].get("resourceVersion", "1")) + 1
                )
                self.objects[key] = obj
                return 200, obj
            if method == "DELETE" and name:
                if self.objects.pop(key, None) is None:
                    return 404, status(404, "NotFound", f'{plural} "{name}" not found')
                return 200, status(200, "", "deleted", success=True)
        self.unexpected.append(f"{method} {raw_path}")
        return 405, status(405, "MethodNotAllowed", f"{method} {url.path}")


def status(code: int, reason: str, message: str, success: bool = False) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def matches(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        if "=" not in term:
            return False  # only equality selectors are used by Helm's storage
        k, v = term.split("=", 1)
        if labels.get(k.rstrip("=!")) != v:
            return False
    return True


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------------------------
# Helm through helm-sdkpy


def helm_lint(values: dict) -> tuple[list[str], list[str]]:
    """helm lint on a copy of the chart carrying `values` as its values.yaml. Returns (problems,
    notes): warnings and errors, and info messages."""
    import helm_sdkpy

    with tempfile.TemporaryDirectory(prefix="panka-chart-") as tmp:
        copy_dir = Path(tmp) / CHART.name
        shutil.copytree(CHART, copy_dir, ignore=shutil.ignore_patterns("ci"))
        (copy_dir / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        config = helm_sdkpy.Configuration(namespace=NAMESPACE)
        result = asyncio.run(helm_sdkpy.Lint(config).run(str(copy_dir)))
    problems, notes = [], []
    for message in result.get("Messages") or []:
        severity = message.get("Severity", 0)
        text = f"{SEVERITY.get(severity, severity)} in {message.get('Path') or '(chart)'}"
        detail = message.get("Err")
        # Most errors serialise as {} (Go error values); a few types carry their message.
        if isinstance(detail, dict):
            detail = detail.get("Message") or detail.get("message")
        if isinstance(detail, str) and detail:
            text += f": {detail}"
        (problems if severity >= 2 or severity == 0 else notes).append(text)
    if result.get("Errors") and not problems:
        problems.append(f"{len(result['Errors'])} lint error(s)")
    return problems, notes


def helm_render(values: dict) -> tuple[str, str]:
    """Renders the chart with Helm's install action against the stand-in server. Returns the
    manifest and the NOTES; raises helm_sdkpy's error (with Helm's message) on failure."""
    import helm_sdkpy

    with FakeApiServer() as server, tempfile.TemporaryDirectory(prefix="panka-chart-") as tmp:
        # Without crds/: they are not templates (the manifest never holds them); creating them
        # would only cost requests and a second round of discovery. The stand-in server
        # announces their kinds anyway.
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci", "crds"))
        config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=server.kubeconfig())
        release = asyncio.run(
            helm_sdkpy.Install(config).run(RELEASE, str(chart), values=values, wait=False, timeout=60)
        )
        if server.unexpected:
            raise RuntimeError(f"the stand-in API server got requests it does not serve: {server.unexpected}")
    return release.get("manifest", ""), (release.get("info") or {}).get("notes", "")


# --------------------------------------------------------------------------------------------
# Facts about the rendered objects


def env_of(workload: dict) -> dict[str, str]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


def common_facts(docs: list[dict]) -> list[str]:
    bad: list[str] = []
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    if len(workloads) != 1:
        bad.append(f"expected one Deployment or StatefulSet, found {[d['kind'] for d in workloads]}")
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 65532:
            bad.append(f"{w['kind']}: pod securityContext must run as non-root user 65532")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            bad.append(f"{w['kind']}: seccompProfile must be RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not True:
            bad.append(f"{w['kind']}: the controller needs its service account token")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{w['kind']}/{c['name']}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{w['kind']}/{c['name']}: allowPrivilegeEscalation must be false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                bad.append(f"{w['kind']}/{c['name']}: capabilities must drop ALL")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                bad.append(f"{w['kind']}/{c['name']}: resource requests and limits must be set")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                    bad.append(f"{w['kind']}/{c['name']}: {probe} must GET {path}")
            env = {e["name"]: e for e in c.get("env", [])}
            for name in ("POD_NAME", "POD_NAMESPACE"):
                if "fieldRef" not in env.get(name, {}).get("valueFrom", {}):
                    bad.append(f"{w['kind']}/{c['name']}: {name} must come from the downward API")
            for e in env.values():
                if "secretKeyRef" in e.get("valueFrom", {}) and e["name"].startswith("PANKA_"):
                    bad.append(f"{w['kind']}/{c['name']}: {e['name']}: secrets are mounted as files")
    for d in docs:
        if d["kind"] == "Secret":
            bad.append(f"the chart must not create Secrets (found {d['metadata']['name']})")
        if d["kind"] in ("Role", "ClusterRole"):
            for rule in d.get("rules", []):
                if "secrets" in rule.get("resources", []) or "*" in rule.get("resources", []):
                    bad.append(f"{d['kind']} {d['metadata']['name']} grants {rule['resources']}")
                if "*" in rule.get("verbs", []) or "*" in rule.get("apiGroups", []):
                    bad.append(f"{d['kind']} {d['metadata']['name']} has a wildcard rule")
    return bad


def kinds(docs: list[dict]) -> list[str]:
    return [d["kind"] for d in docs]


def only(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def facts_default(docs: list[dict]) -> list[str]:
    bad = []
    if "Deployment" not in kinds(docs) or "StatefulSet" in kinds(docs):
        bad.append("the default values must give a Deployment and no StatefulSet")
        return bad
    env = env_of(only(docs, "Deployment"))
    if env.get("PANKA_SOURCE") != "crd" or env.get("PANKA_NAMESPACE") != NAMESPACE:
        bad.append(f"default: CRD mode watching the release namespace expected, env {env}")
    if "PANKA_SHARD" in env:
        bad.append("default: PANKA_SHARD must not be set with one shard")
    if "ClusterRole" in kinds(docs) or "ClusterRoleBinding" in kinds(docs):
        bad.append("default: no ClusterRole expected")
    roles = [d for d in docs if d["kind"] == "Role"]
    if sorted(r["metadata"]["namespace"] for r in roles) != [NAMESPACE, NAMESPACE]:
        bad.append("default: the lease Role and the stacks Role belong in the release namespace")
    return bad


def facts_git(docs: list[dict]) -> list[str]:
    bad = []
    deploy = only(docs, "Deployment")
    env = env_of(deploy)
    want = {
        "PANKA_SOURCE": "git",
        "PANKA_REPO_URL": "https://github.com/acme/deploy.git",
        "PANKA_ENVIRONMENTS": "development,staging",
        "PANKA_GIT_TOKEN_FILE": "/etc/panka/git-token/token",
        "PANKA_WEBHOOK_SECRET_FILE": "/etc/panka/webhook/secret",
        "PANKA_STATE_BUCKET": "acme-panka-state",
        "PANKA_LOCK_TABLE": "acme-panka-locks",
        "PANKA_NAMESPACE": NAMESPACE,
    }
    for k, v in want.items():
        if env.get(k) != v:
            bad.append(f"git: {k}={env.get(k)!r}, expected {v!r}")
    if deploy["spec"]["replicas"] != 2:
        bad.append("git: replicaCount 2 expected")
    if "ServiceMonitor" not in kinds(docs):
        bad.append("git: ServiceMonitor expected")
    sa = only(docs, "ServiceAccount")
    if "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {}):
        bad.append("git: the IRSA annotation must reach the ServiceAccount")
    if "ClusterRole" in kinds(docs):
        bad.append("git: no ClusterRole expected")
    return bad


def facts_sharded(docs: list[dict]) -> list[str]:
    bad = []
    if "Deployment" in kinds(docs):
        bad.append("sharded: no Deployment expected")
    sts = only(docs, "StatefulSet")
    if sts["spec"]["replicas"] != 3:
        bad.append(f"sharded: 3 replicas expected, got {sts['spec']['replicas']}")
    env = env_of(sts)
    if env.get("PANKA_SHARD") != "ordinal/3":
        bad.append(f"sharded: PANKA_SHARD=ordinal/3 expected, got {env.get('PANKA_SHARD')!r}")
    if env.get("PANKA_GIT_KNOWN_HOSTS") != "/etc/panka/known-hosts/known_hosts":
        bad.append("sharded: the known_hosts file must be mounted and named")
    headless = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
    if [d["metadata"]["name"] for d in headless] != [sts["spec"]["serviceName"]]:
        bad.append("sharded: the StatefulSet's headless Service is missing")
    if "ConfigMap" not in kinds(docs):
        bad.append("sharded: the known_hosts ConfigMap is missing")
    if "ClusterRole" in kinds(docs):
        bad.append("sharded: no ClusterRole expected")
    return bad


def facts_crd_all_namespaces(docs: list[dict]) -> list[str]:
    bad = []
    env = env_of(only(docs, "Deployment"))
    if env.get("PANKA_ALL_NAMESPACES") != "true" or "PANKA_NAMESPACE" in env:
        bad.append("crd-all-namespaces: PANKA_ALL_NAMESPACES=true and no PANKA_NAMESPACE expected")
    cr = only(docs, "ClusterRole")
    if not any("stacks" in r.get("resources", []) for r in cr["rules"]):
        bad.append("crd-all-namespaces: the ClusterRole must grant the stack rules")
    if any("leases" in r.get("resources", []) for r in cr["rules"]):
        bad.append("crd-all-namespaces: leases belong in the namespaced Role, not the ClusterRole")
    only(docs, "ClusterRoleBinding")
    return bad


FACTS: dict[str, Callable[[list[dict]], list[str]]] = {
    "default": facts_default,
    "git": facts_git,
    "sharded": facts_sharded,
    "crd-all-namespaces": facts_crd_all_namespaces,
}

# Values the chart must refuse, and a piece of the message that must say why.
REFUSED: list[tuple[str, dict, str]] = [
    ("git mode without a URL", {"source": {"mode": "git"}}, "source.git.url is empty"),
    (
        "git mode without environments",
        {"source": {"mode": "git", "git": {"url": "https://example.com/deploy.git"}}},
        "source.git.environments is empty",
    ),
    ("an unknown source mode", {"source": {"mode": "foo"}}, "source.mode"),
    ("zero shards", {"sharding": {"shards": 0}}, "sharding.shards"),
    ("a malformed duration", {"driftInterval": "five minutes"}, "driftInterval"),
    ("an unknown value", {"sharding": {"shard": 2}}, "shard"),
    (
        "several pods without shared state",
        {"sharding": {"shards": 2}},
        "set state.bucket and state.lockTable",
    ),
    (
        "SSH without known_hosts",
        {
            "source": {
                "mode": "git",
                "git": {
                    "url": "git@github.com:acme/deploy.git",
                    "environments": ["development"],
                    "credentials": {"sshKeySecret": {"name": "key"}},
                },
            }
        },
        "source.git.knownHosts is empty",
    ),
]


# --------------------------------------------------------------------------------------------


def main() -> int:
    if os.environ.get("HELM_DRIVER") != "memory":
        # Helm's Go runtime reads the environment when the library loads; the wrapper sets it.
        print("check_chart.py: run it through scripts/check-chart", file=sys.stderr)
        return 2
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    cases: list[tuple[str, Path | None]] = [("default", None)]
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        cases.append((path.name.removesuffix("-values.yaml"), path))
    unknown = [name for name, _ in cases if name not in FACTS]
    failures: list[str] = []
    if unknown:
        failures.append(f"no facts are checked for ci values {unknown}: add them to FACTS in {__file__}")

    for name, path in cases:
        given = yaml.safe_load(path.read_text()) if path else {}
        merged = merge_values(defaults, given or {})
        shown = path.relative_to(ROOT) if path else "values.yaml"
        problems = [f"schema: {e}" for e in schema_errors(merged)]
        lint_problems, notes = helm_lint(merged)
        problems += [f"helm lint: {p}" for p in lint_problems]
        try:
            manifest, notes_text = helm_render(given or {})
        except Exception as err:
            problems.append(f"render: {err}")
        else:
            out = OUT / f"{name}.yaml"
            out.write_text(f"# helm install {RELEASE} charts/panka -n {NAMESPACE} -f {shown} (rendered by {Path(__file__).name})\n" + manifest)
            (OUT / f"{name}.NOTES.txt").write_text(notes_text)
            docs = [d for d in yaml.safe_load_all(manifest) if d]
            problems += common_facts(docs)
            try:
                problems += FACTS.get(name, lambda _: [])(docs)
            except AssertionError as err:
                problems.append(str(err))
        verdict = "ok" if not problems else "FAILED"
        print(f"chart: {shown}: {verdict} ({len(notes)} lint info message(s))")
        failures += [f"{shown}: {p}" for p in problems]

    for what, given, expected in REFUSED:
        # Both must refuse: the schema check above (it names the value) and Helm itself (what
        # `helm install` runs: values.schema.json and the templates' `fail`).
        said = schema_errors(merge_values(defaults, given))
        try:
            helm_render(given)
        except Exception as err:
            helm_said = str(err)
        else:
            helm_said = ""
            failures.append(f"refused values: Helm rendered {what} {given}; it must refuse them")
        if not any(expected in s for s in said + [helm_said]):
            failures.append(
                f"refused values: {what} {given} should fail mentioning {expected!r}, got {said + [helm_said]}"
            )
    print(f"chart: {len(REFUSED)} sets of bad values refused")

    elapsed = time.monotonic() - started
    if failures:
        sys.stdout.flush()
        print(f"chart: {len(failures)} problem(s) ({elapsed:.1f}s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"chart: ok, rendered into {OUT.relative_to(ROOT)}/ ({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
