#!/usr/bin/env bash
# Smoke test of panka on a real Kubernetes cluster: the chart in CRD mode, one example stack
# applied as custom resources, reconciled against an AWS emulator running in the cluster.
#
#   KUBECONFIG=~/.kube/config PANKA_IMAGE=registry.example.com/panka-controller:0.1.0 \
#       tests/e2e-kubernetes.sh
#
# Runs only when KUBECONFIG is set (it says "skipped" and exits 0 otherwise); it is not part of
# scripts/test, because our CI has no API server. Everything happens in a throwaway namespace,
# removed on exit (PANKA_E2E_KEEP=1 keeps it for a look). The CRDs stay: Helm never deletes
# the CRDs of crds/.
#
# Steps: a namespace; moto (motoserver/moto:5.1.22 running scripts/moto_server.py with the
# patches in scripts/moto_patches/, as the local tests do) as Deployment + Service; the state
# bucket and lock table (`panka backend create`) and the example's database secret, through a
# port-forward; the chart (CRD mode, AWS_ENDPOINT_URL at moto); `panka export` of
# notification-platform/development applied as resources; the Stack Synced and Ready; its
# events; the controller's /metrics; the Stack deleted, its finalizer letting go, and AWS
# resources kept (deletion policy Orphan, the default).
#
# Needs: kubectl, curl, cargo (builds the panka CLI unless PANKA_BIN names one), and helm or the
# project venv with helm-sdkpy (scripts/setup). The cluster must be able to pull PANKA_IMAGE
# (default: the chart's, panka-controller:<appVersion>; with kind: `kind load docker-image`) and
# motoserver/moto:5.1.22.
#
# Environment: PANKA_IMAGE, PANKA_IMAGE_PULL_POLICY (IfNotPresent), PANKA_BIN, PANKA_E2E_TIMEOUT
# (seconds per wait, 300), PANKA_E2E_KEEP.
set -euo pipefail

if [ -z "${KUBECONFIG:-}" ]; then
    echo "e2e-kubernetes: skipped: KUBECONFIG is not set"
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/panka"
EXAMPLE_REPO="$ROOT/examples/deployment-repo"
STACK=notification-platform
ENVIRONMENT=development
RELEASE=panka
BUCKET=panka-e2e-state
TABLE=panka-e2e-locks
REGION=us-east-1
TIMEOUT="${PANKA_E2E_TIMEOUT:-300}"
NS="panka-e2e-$(date +%s)-$RANDOM"
APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")"
IMAGE="${PANKA_IMAGE:-panka-controller:$APP_VERSION}"
PULL_POLICY="${PANKA_IMAGE_PULL_POLICY:-IfNotPresent}"
WORK="$(mktemp -d)"
PF_PIDS=()
PASSED=0

say() { echo "==> $*"; }
die() {
    echo "e2e-kubernetes: $*" >&2
    exit 1
}

for tool in kubectl curl; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool on PATH"
done
HELM=""
if command -v helm >/dev/null 2>&1; then
    HELM=helm
elif "$ROOT/.venv/bin/python" -c 'import helm_sdkpy, yaml' 2>/dev/null; then
    HELM=sdkpy
else
    die "needs helm on PATH, or the project venv with helm-sdkpy (run scripts/setup)"
fi
if [ -n "${PANKA_BIN:-}" ]; then
    PANKA="$PANKA_BIN"
else
    say "building the panka CLI"
    (cd "$ROOT" && cargo build -q -p panka)
    PANKA="$ROOT/target/debug/panka"
fi
[ -x "$PANKA" ] || die "no panka CLI at $PANKA"

# The image name split for the chart: repository and tag (the last ':' after the last '/').
case "${IMAGE##*/}" in
    *:*) IMAGE_REPOSITORY="${IMAGE%:*}" IMAGE_TAG="${IMAGE##*:}" ;;
    *) IMAGE_REPOSITORY="$IMAGE" IMAGE_TAG="$APP_VERSION" ;;
esac

k() { kubectl -n "$NS" "$@"; }

helm_install() { # values file
    if [ "$HELM" = helm ]; then
        helm install "$RELEASE" "$CHART" -n "$NS" -f "$1"
    else
        "$ROOT/.venv/bin/python" - "$RELEASE" "$CHART" "$NS" "$1" <<'EOF'
import asyncio, sys, yaml, helm_sdkpy
release, chart, namespace, values = sys.argv[1:]
config = helm_sdkpy.Configuration(namespace=namespace)
asyncio.run(helm_sdkpy.Install(config).run(release, chart, values=yaml.safe_load(open(values)), wait=False))
print(f"installed {release} in {namespace}")
EOF
    fi
}

helm_uninstall() {
    if [ "$HELM" = helm ]; then
        helm uninstall "$RELEASE" -n "$NS" --wait --timeout "${TIMEOUT}s"
    else
        "$ROOT/.venv/bin/python" - "$RELEASE" "$NS" "$TIMEOUT" <<'EOF'
import asyncio, sys, helm_sdkpy
release, namespace, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = helm_sdkpy.Configuration(namespace=namespace)
asyncio.run(helm_sdkpy.Uninstall(config).run(release, wait=True, timeout=timeout))
EOF
    fi
}

# kubectl port-forward to a free local port; sets PF_PORT.
port_forward() { # name target remote-port
    local log="$WORK/port-forward-$1.log" port="" i
    k port-forward --address 127.0.0.1 "$2" ":$3" >"$log" 2>&1 &
    PF_PIDS+=("$!")
    for i in $(seq 1 100); do
        port="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" | head -n 1)"
        if [ -n "$port" ]; then
            PF_PORT="$port"
            return 0
        fi
        kill -0 "${PF_PIDS[-1]}" 2>/dev/null || break
        sleep 0.2
    done
    cat "$log" >&2
    die "port-forward to $2:$3 did not start (try $i)"
}

# boto3 inside the moto pod (the image has it), against moto itself: no AWS tools needed here.
aws_in_moto() { # python code using `client(service)`
    k exec deploy/moto -- python -c "
import boto3
def client(service):
    return boto3.client(service, endpoint_url='http://127.0.0.1:5000', region_name='$REGION',
                        aws_access_key_id='testing', aws_secret_access_key='testing')
$1"
}

cleanup() {
    local rc=$?
    set +e
    if [ "$PASSED" != 1 ]; then
        echo "---- diagnostics (namespace $NS) ----" >&2
        k get all,panka -o wide >&2
        k get events --sort-by=.lastTimestamp >&2
        k describe pods -l app.kubernetes.io/instance="$RELEASE" >&2
        k logs -l app.kubernetes.io/instance="$RELEASE" --tail=200 --all-containers >&2
        k logs deploy/moto --tail=50 >&2
    fi
    for pid in "${PF_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    if [ -n "${PANKA_E2E_KEEP:-}" ]; then
        echo "e2e-kubernetes: keeping namespace $NS (PANKA_E2E_KEEP)" >&2
    else
        # A Stack whose finalizer did not let go would keep the namespace terminating for ever:
        # the controller is about to go, so drop its finalizers first.
        for stack in $(k get stacks.panka.io -o name 2>/dev/null); do
            k patch "$stack" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
        done
        helm_uninstall >/dev/null 2>&1
        kubectl delete namespace "$NS" --wait=true --timeout="${TIMEOUT}s" >/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

say "namespace $NS (image $IMAGE_REPOSITORY:$IMAGE_TAG, helm: $HELM)"
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" app.kubernetes.io/part-of=panka-e2e >/dev/null

say "AWS emulator: moto 5.1.22 with panka's patches"
patch_args=()
patch_items=""
for f in "$ROOT"/scripts/moto_patches/*.py; do
    name="$(basename "$f")"
    patch_args+=("--from-file=patch-$name=$f")
    patch_items+="
            - {key: patch-$name, path: moto_patches/$name}"
done
k create configmap moto-panka --from-file=moto_server.py="$ROOT/scripts/moto_server.py" \
    "${patch_args[@]}" >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: moto
  labels: {app: moto}
spec:
  replicas: 1
  selector:
    matchLabels: {app: moto}
  template:
    metadata:
      labels: {app: moto}
    spec:
      containers:
        - name: moto
          image: motoserver/moto:5.1.22
          command: ["python", "/opt/panka/moto_server.py", "--host", "0.0.0.0", "--port", "5000"]
          # As scripts/aws-emulator starts it: ECS services report running tasks (else no
          # rollout completes) and the AWS-managed IAM policies exist (the execution role's).
          env:
            - {name: MOTO_ECS_SERVICE_RUNNING, value: "2"}
            - {name: MOTO_IAM_LOAD_MANAGED_POLICIES, value: "true"}
          ports:
            - {name: http, containerPort: 5000}
          readinessProbe:
            tcpSocket: {port: http}
            periodSeconds: 2
          volumeMounts:
            - {name: panka, mountPath: /opt/panka}
      volumes:
        - name: panka
          configMap:
            name: moto-panka
            items:
            - {key: moto_server.py, path: moto_server.py}$patch_items
---
apiVersion: v1
kind: Service
metadata:
  name: moto
spec:
  selector: {app: moto}
  ports:
    - {name: http, port: 5000, targetPort: http}
EOF
k rollout status deploy/moto --timeout="${TIMEOUT}s"

say "state bucket, lock table and the example's secret"
port_forward moto svc/moto 5000
(
    export AWS_ENDPOINT_URL="http://127.0.0.1:$PF_PORT" AWS_REGION="$REGION" \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    cd "$WORK"
    "$PANKA" backend create --bucket "$BUCKET" --table "$TABLE" --region "$REGION"
)
aws_in_moto "client('secretsmanager').create_secret(
    Name='/stacks/$STACK/email-service/db-password',
    SecretString='{\"password\":\"not-a-real-password-1\"}')
print('secret created')"

say "chart: CRD mode, state in moto"
cat >"$WORK/values.yaml" <<EOF
image:
  repository: "$IMAGE_REPOSITORY"
  tag: "$IMAGE_TAG"
  pullPolicy: "$PULL_POLICY"
source:
  mode: crd
state:
  bucket: $BUCKET
  lockTable: $TABLE
  region: $REGION
  endpointUrl: http://moto:5000
driftInterval: 1m
logging:
  level: panka=debug,info
extraEnv:
  # moto takes any credentials.
  - {name: AWS_ACCESS_KEY_ID, value: testing}
  - {name: AWS_SECRET_ACCESS_KEY, value: testing}
EOF
helm_install "$WORK/values.yaml"
k rollout status deploy/"$RELEASE" --timeout="${TIMEOUT}s"

say "the example stack as resources: panka export --stack $STACK --environment $ENVIRONMENT"
"$PANKA" --repo "$EXAMPLE_REPO" export --stack "$STACK" --environment "$ENVIRONMENT" >"$WORK/stack.yaml"
grep -q '^kind: Stack$' "$WORK/stack.yaml" || die "panka export printed no Stack: $(head -c 2000 "$WORK/stack.yaml")"
k apply -f "$WORK/stack.yaml"
STACK_RESOURCE="$(k get stacks.panka.io -o name)"
if [ -z "$STACK_RESOURCE" ] || [ "$(echo "$STACK_RESOURCE" | wc -l)" != 1 ]; then
    die "expected one Stack resource, found: ${STACK_RESOURCE:-none}"
fi

say "waiting for $STACK_RESOURCE to be Synced and Ready (at most ${TIMEOUT}s each)"
k wait --for=condition=Synced "$STACK_RESOURCE" --timeout="${TIMEOUT}s"
k wait --for=condition=Ready "$STACK_RESOURCE" --timeout="${TIMEOUT}s"
k get stacks.panka.io
k get panka

say "events of the Stack"
k get events --field-selector involvedObject.kind=Stack
reasons="$(k get events --field-selector involvedObject.kind=Stack -o jsonpath='{.items[*].reason}')"
case " $reasons " in
    *" Applied "*) ;;
    *) die "no Applied event on the Stack (reasons: ${reasons:-none})" ;;
esac

say "controller endpoints: /healthz, /readyz, /metrics"
port_forward metrics "svc/$RELEASE" 9090
base="http://127.0.0.1:$PF_PORT"
curl -fsS "$base/healthz" >/dev/null || die "/healthz failed"
curl -fsS "$base/readyz" >/dev/null || die "/readyz failed"
curl -fsS "$base/metrics" >"$WORK/metrics.txt" || die "/metrics failed"
grep -E '^panka_reconciles_total' "$WORK/metrics.txt" || die "no panka_reconciles_total in /metrics"
restarts="$(k get pods -l app.kubernetes.io/instance="$RELEASE" -o jsonpath='{..restartCount}')"
[ "$(echo "$restarts" | tr -d ' 0')" = "" ] || die "the controller restarted: $restarts"

say "deleting $STACK_RESOURCE: the finalizer lets it go, AWS resources stay (Orphan)"
k delete "$STACK_RESOURCE" --timeout="${TIMEOUT}s"
if k get "$STACK_RESOURCE" >/dev/null 2>&1; then
    die "$STACK_RESOURCE is still there after its deletion"
fi
queues="$(aws_in_moto "print(len(client('sqs').list_queues().get('QueueUrls', [])))")"
[ "$queues" -gt 0 ] || die "the stack's queue is gone: deletion policy Orphan must keep AWS resources"

PASSED=1
say "e2e-kubernetes: passed"
