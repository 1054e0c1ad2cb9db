//! The adapter against kube-rs's own request mocking (`tower-test`): an API-server verifier
//! answers each request the adapter makes, after asserting its method, path, content type and
//! body — and that `charts/panka/files/rbac-rules.yaml` grants it, so the chart's RBAC covers
//! every request the code makes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use panka_core::sync::{Phase, Readiness, SyncStatus};
use panka_crds::resource::{DeletionPolicy, Stack, StackResourceSpec};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, Handle, SendResponse};

use super::*;
use crate::reconcile::{Context, Settings, StackSource};

/// The RBAC rules the chart grants: (API group, resource, verb).
fn granted() -> Vec<(String, String, String)> {
    let text = include_str!("../../../charts/panka/files/rbac-rules.yaml");
    let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("the RBAC rules file parses");
    let mut out = Vec::new();
    for list in ["own", "stacks"] {
        let rules = docs[0][list]
            .as_vec()
            .expect("rule lists `own` and `stacks`");
        for rule in rules {
            let strings = |k: &str| -> Vec<String> {
                rule[k]
                    .as_vec()
                    .unwrap_or_else(|| panic!("{k} is a list"))
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            };
            for g in strings("apiGroups") {
                for r in strings("resources") {
                    for v in strings("verbs") {
                        out.push((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The (group, resource[/subresource], verb) RBAC sees in a request.
fn rbac_of(method: &str, path: &str, query: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), &parts[2..]),
        Some(&"apis") => (parts[1].to_owned(), &parts[3..]),
        _ => panic!("not an API path: {path}"),
    };
    let rest = match rest.first() {
        Some(&"namespaces") if rest.len() > 2 => &rest[2..],
        _ => rest,
    };
    let resource = match rest.len() {
        3 => format!("{}/{}", rest[0], rest[2]),
        _ => rest[0].to_owned(),
    };
    let named = rest.len() >= 2;
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => panic!("unexpected method {method}"),
    };
    (group, resource, verb.to_owned())
}

/// One request as the verifier saw it.
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// The verifier: hands out requests one by one, each checked against the chart's RBAC.
struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    granted: Vec<(String, String, String)>,
}

fn client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = ApiServer {
        handle,
        granted: granted(),
    };
    (Client::new(service, "apps"), server)
}

impl ApiServer {
    async fn next(&mut self) -> (Seen, SendResponse<Response<Body>>) {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
                .await
                .expect("a request within 10 s")
                .expect("the client is alive");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a body");
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON body")
            },
        };
        let rbac = rbac_of(&seen.method, &seen.path, &seen.query);
        let mut needed = vec![rbac.clone()];
        // A server-side apply creates the object when it does not exist: the API server then
        // authorizes `create` too.
        if seen.content_type == "application/apply-patch+yaml" && !rbac.1.contains('/') {
            needed.push((rbac.0.clone(), rbac.1.clone(), "create".to_owned()));
        }
        for rbac in needed {
            assert!(
                self.granted.contains(&rbac),
                "{} {} needs {rbac:?}, which charts/panka/files/rbac-rules.yaml does not grant",
                seen.method,
                seen.path
            );
        }
        (seen, send)
    }

    /// Asserts no request comes within `wait`.
    async fn none(&mut self, wait: Duration) {
        if let Ok(Some((r, _))) = tokio::time::timeout(wait, self.handle.next_request()).await {
            panic!("unexpected request {} {}", r.method(), r.uri());
        }
    }
}

fn respond(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn not_found(send: SendResponse<Response<Body>>) {
    respond(
        send,
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    );
}

fn stack_object() -> Stack {
    let mut s = Stack::new(
        "shop-production",
        StackResourceSpec {
            stack: "shop".into(),
            environment: "production".into(),
            ..StackResourceSpec::default()
        },
    );
    s.metadata.namespace = Some("apps".into());
    s.metadata.uid = Some("0b2c-uid".into());
    s.metadata.generation = Some(3);
    s.metadata.resource_version = Some("41".into());
    s
}

fn synced() -> SyncStatus {
    SyncStatus {
        stack: "shop".into(),
        environment: "production".into(),
        phase: Phase::Synced,
        commit: Some("8b4dc4a0123456".into()),
        synced_commit: Some("8b4dc4a0123456".into()),
        version: Some("v1.3.0".into()),
        last_release: Some("rel-1".into()),
        drift_checked_at: Some("2026-12-06T10:00:00Z".into()),
        components: Some(Readiness { ready: 2, total: 2 }),
        ..SyncStatus::default()
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("condition {kind}"))
}

/// Expects an Event with `reason` on the Stack, and answers it.
async fn expect_event(server: &mut ApiServer, reason: &str, warning: bool) -> Value {
    let (seen, send) = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/apps/events")
    );
    assert_eq!(seen.body["reason"], reason, "{}", seen.body);
    assert_eq!(
        seen.body["type"],
        if warning { "Warning" } else { "Normal" }
    );
    assert_eq!(seen.body["regarding"]["kind"], "Stack");
    assert_eq!(seen.body["regarding"]["name"], "shop-production");
    assert_eq!(seen.body["reportingController"], FIELD_MANAGER);
    respond(send, 201, &seen.body);
    seen.body
}

/// `kube.publish(…)` in a task, so the verifier can answer the requests it makes.
fn publishing(
    kube: &Arc<Kube>,
    obj: &Stack,
    status: &SyncStatus,
    previous: Option<&SyncStatus>,
    rolled_back: bool,
) -> tokio::task::JoinHandle<()> {
    let (kube, obj, status, previous) =
        (kube.clone(), obj.clone(), status.clone(), previous.cloned());
    tokio::spawn(async move {
        kube.publish(&Report {
            object: &obj,
            status: &status,
            previous: previous.as_ref(),
            rolled_back,
        })
        .await;
    })
}

#[tokio::test]
async fn status_is_server_side_applied_once_and_not_rewritten_for_a_timestamp() {
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, Some("panka-controller-0".into())));
    let obj = stack_object();
    let status = synced();
    let publisher = publishing(&kube, &obj, &status, None, false);
    let (seen, send) = server.next().await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.path,
        "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production/status"
    );
    assert!(
        seen.query.contains("fieldManager=panka-controller"),
        "{}",
        seen.query
    );
    assert!(seen.query.contains("force=true"), "{}", seen.query);
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(seen.body["apiVersion"], "panka.io/v1alpha1");
    assert_eq!(seen.body["kind"], "Stack");
    let st = &seen.body["status"];
    assert_eq!(condition(st, "Ready")["status"], "True");
    assert_eq!(condition(st, "Synced")["status"], "True");
    assert_eq!(condition(st, "Synced")["reason"], "Synced");
    assert_eq!(condition(st, "Synced")["observedGeneration"], 3);
    assert_eq!(st["revision"], "8b4dc4a");
    assert_eq!(st["version"], "v1.3.0");
    assert_eq!(st["drift"], "None");
    assert_eq!(
        (st["readyComponents"].clone(), st["totalComponents"].clone()),
        (json!(2), json!(2))
    );
    let mut echoed = serde_json::to_value(&obj).unwrap();
    echoed["status"] = st.clone();
    respond(send, 200, &echoed);
    let event = expect_event(&mut server, "Applied", false).await;
    assert!(
        event["note"].as_str().unwrap().contains("8b4dc4a"),
        "{event}"
    );
    assert!(event["note"].as_str().unwrap().contains("rel-1"), "{event}");
    publisher.await.unwrap();

    // The next pass finds the same, only checked later: nothing to write, nothing to say.
    let mut later = status.clone();
    later.drift_checked_at = Some("2026-12-06T10:05:00Z".into());
    let publisher = publishing(&kube, &obj, &later, Some(&status), false);
    server.none(Duration::from_millis(300)).await;
    publisher.await.unwrap();
}

#[tokio::test]
async fn drift_and_failures_are_events_with_their_reasons() {
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, None));
    let mut obj = stack_object();
    let before = synced();
    obj.status = Some(status::stack_status(&before, Some(3), None, "T0"));
    let mut drifted = before.clone();
    drifted.phase = Phase::Drifted;
    drifted.drifted = 2;
    let task = publishing(&kube, &obj, &drifted, Some(&before), false);
    let (seen, send) = server.next().await;
    assert!(seen.path.ends_with("/stacks/shop-production/status"));
    let st = &seen.body["status"];
    assert_eq!(condition(st, "Drifted")["status"], "True");
    assert_eq!(condition(st, "Drifted")["reason"], "DriftDetected");
    // Only the changed condition moved.
    assert_eq!(condition(st, "Synced")["lastTransitionTime"], "T0");
    assert_eq!(st["drift"], "2 components");
    respond(send, 200, &json!({}));
    expect_event(&mut server, "DriftDetected", true).await;
    task.await.unwrap();

    let mut failed = drifted.clone();
    failed.phase = Phase::Failed;
    failed.error = Some(panka_core::sync::SyncError {
        at: "T".into(),
        class: "transient".into(),
        message: "ECS: service shop-api did not stabilize".into(),
        attempts: 1,
    });
    let task = publishing(&kube, &obj, &failed, Some(&drifted), true);
    let (seen, send) = server.next().await;
    assert_eq!(
        condition(&seen.body["status"], "Ready")["reason"],
        "ReconcileFailed"
    );
    respond(send, 200, &json!({}));
    let event = expect_event(&mut server, "RolledBack", true).await;
    assert!(event["note"]
        .as_str()
        .unwrap()
        .contains("did not stabilize"));
    task.await.unwrap();
}

#[tokio::test]
async fn git_mode_applies_its_stack_objects_and_deletes_removed_ones() {
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, None));
    let obj = crate::daemon::poll::stack_object(
        "shop",
        "production",
        "https://git.example/x.git",
        "main",
        "apps",
    );
    let task = {
        let kube = kube.clone();
        tokio::spawn(async move {
            kube.apply_stack(&obj).await.unwrap();
            kube.delete_stack("apps", "shop-production").await.unwrap();
        })
    };
    let (seen, send) = server.next().await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.path,
        "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production"
    );
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(seen.body["spec"]["stack"], "shop");
    assert_eq!(seen.body["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
    assert!(
        seen.body.get("status").is_none(),
        "the object's writer leaves status alone"
    );
    respond(send, 200, &seen.body);
    let (seen, send) = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "DELETE",
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production"
        )
    );
    // Already gone is fine.
    not_found(send);
    task.await.unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// A repository on branch `main` whose one commit holds the example `notification-platform`
/// stack without its `production` environment.
fn repository_without_production(dir: &std::path::Path) {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deployment-repo/stacks/notification-platform");
    let stack = dir.join("stacks/notification-platform");
    copy_dir(&examples, &stack);
    std::fs::remove_dir_all(stack.join("environments/production")).unwrap();
    let repo = git2::Repository::init(dir).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let who = git2::Signature::now("tester", "tester@example.invalid").unwrap();
    repo.commit(Some("refs/heads/main"), &who, &who, "stacks", &tree, &[])
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
}

#[tokio::test]
async fn git_mode_writes_objects_only_where_a_stack_deploys_and_deletes_those_left_from_before() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("repo");
    repository_without_production(&work);
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, None));
    let url = format!("file://{}", work.display());
    // Objects left from before a restart: a stack since removed, and an environment the stack
    // no longer deploys to — and one of another controller in the namespace, left alone.
    let (store, mut writer) = kube::runtime::reflector::store::<Stack>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    for (stack, env, instance) in [
        ("old-stack", "development", "panka-controller"),
        ("notification-platform", "production", "panka-controller"),
        ("other-team", "development", "other-panka"),
    ] {
        let mut obj = crate::daemon::poll::stack_object(stack, env, &url, "main", "apps");
        obj.labels_mut().insert(
            crate::daemon::poll::CONTROLLER_LABEL.into(),
            instance.into(),
        );
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(obj));
    }
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let git =
        crate::source::git::GitSource::new(&url, "main", "", &dir.path().join("cache")).unwrap();
    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let fetch_now = Arc::new(tokio::sync::Notify::new());
    let poller = crate::daemon::poll::Poller {
        snapshot: Arc::new(crate::daemon::poll::GitSnapshot::new(Arc::new(git))),
        url,
        branch: "main".into(),
        environments: vec!["development".into(), "production".into()],
        targets: crate::daemon::poll::Targets::Kube {
            kube,
            namespace: "apps".into(),
            store,
        },
        shard: crate::daemon::shard::Shard { index: 0, count: 1 },
        instance: "panka-controller".into(),
        queue,
        interval: Duration::from_secs(3600),
        fetch_now: fetch_now.clone(),
        ready: Arc::default(),
        metrics: crate::reconcile::metrics::Metrics::new(),
        shutdown: stop.clone(),
    };
    let task = tokio::spawn(poller.run());
    // Gone targets first (a leaving target may hold a name a new one wants), then the new.
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let (seen, send) = server.next().await;
        assert_eq!(seen.method, "DELETE");
        deleted.push(seen.path);
        not_found(send);
    }
    assert_eq!(
        deleted,
        [
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/notification-platform-production",
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/old-stack-development",
        ]
    );
    let (seen, send) = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "PATCH",
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/notification-platform-development"
        )
    );
    assert_eq!(
        seen.body["metadata"]["labels"][crate::daemon::poll::CONTROLLER_LABEL],
        "panka-controller"
    );
    respond(send, 200, &seen.body);
    // No object for production, where the stack does not deploy; the other controller's
    // object is not touched.
    server.none(Duration::from_millis(300)).await;
    let first = queued.recv().await.unwrap();
    assert_eq!(first.name, "notification-platform-development");
    assert!(queued.try_recv().is_err(), "one target queued");

    // The watch brings the object back; a fetch of the same commit writes nothing.
    let written: Stack = serde_json::from_value(seen.body.clone()).unwrap();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(written.clone()));
    fetch_now.notify_one();
    server.none(Duration::from_millis(500)).await;
    // Someone deletes it: the next fetch writes it again and queues it.
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(written));
    fetch_now.notify_one();
    let (seen, send) = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "PATCH",
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/notification-platform-development"
        )
    );
    respond(send, 201, &seen.body);
    let again = tokio::time::timeout(Duration::from_secs(5), queued.recv())
        .await
        .expect("queued again")
        .unwrap();
    assert_eq!(again.name, "notification-platform-development");
    stop.cancel();
    task.await.unwrap();
}

/// A source whose every revision fails to load (the approval and finalizer scenarios need
/// no AWS).
#[derive(Debug)]
struct Broken;

impl StackSource for Broken {
    fn revision(&self, _target: &Stack) -> Option<String> {
        Some("c0ffee0000000000".into())
    }
    fn read(
        &self,
        _revision: &str,
        _target: &Stack,
    ) -> Result<panka_core::source::FileTree, panka_core::diag::Diagnostics> {
        unreachable!("desired is overridden")
    }
    fn desired(
        &self,
        _revision: &str,
        _target: &Stack,
        _purpose: crate::reconcile::Purpose,
    ) -> Result<Option<(panka_core::model::DesiredStack, panka_core::graph::Graph)>, String> {
        Err("stacks/shop/stack.yaml:3:1: unknown field `specs`".into())
    }
}

fn context(dir: &std::path::Path, kube: Arc<Kube>) -> Arc<Context> {
    let config = crate::config::Config {
        state: crate::config::StateConfig::Local {
            dir: dir.join("state"),
        },
        locks: crate::config::LocksConfig::Local {
            dir: dir.join("locks"),
        },
        aws: crate::aws::AwsSettings::default(),
        source: None,
    };
    let backends = crate::backend::open_with(&config, None);
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    Arc::new(
        Context::new(
            Arc::new(Broken),
            backends,
            sdk,
            crate::budget::Budget::new(None),
            Settings {
                poll_interval: Duration::from_secs(30),
                drift_interval: Duration::from_secs(300),
                rollout_wait: Duration::from_secs(30),
                rollout_timeout: Duration::from_secs(900),
                allow_destroy: false,
                actor: "panka-controller@test".into(),
            },
            crate::reconcile::metrics::Metrics::new(),
            CancellationToken::new(),
        )
        .with_status(kube),
    )
}

#[tokio::test]
async fn the_approval_annotation_approves_the_pending_plan_and_is_taken_off() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, None));
    let ctx = context(dir.path(), kube);
    let key = crate::state::StateKey::new("shop", "production").unwrap();
    let plan = panka_core::sync::PendingPlan {
        id: "ab12cd34".into(),
        fingerprint: "ab12cd34ef".into(),
        kind: panka_core::state::ReleaseKind::Apply,
        commit: Some("8b4dc4a".into()),
        version: Some("v1.3.0".into()),
        changes: vec!["~ web/api update".into()],
        planned_by: "panka-controller@test".into(),
        planned_at: "T".into(),
        approved: None,
        applied_by: None,
    };
    assert!(ctx
        .backends
        .state
        .put_pending(&key, &plan, None)
        .await
        .unwrap());

    let mut obj = stack_object();
    obj.finalizers_mut().push(FINALIZER.into());
    obj.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), "ab12cd34".into());
    let pass = crate::reconcile::reconcile(Arc::new(obj), ctx.clone());
    let verify = async {
        // The commit does not load: status says where, and the event says so too.
        let (seen, send) = server.next().await;
        assert!(seen.path.ends_with("/status"));
        let synced = condition(&seen.body["status"], "Synced");
        assert_eq!(synced["reason"], "InvalidRevision");
        assert!(synced["message"]
            .as_str()
            .unwrap()
            .contains("stack.yaml:3:1"));
        respond(send, 200, &json!({}));
        expect_event(&mut server, "Failed", true).await;
        // Then the annotation comes off, only if it still names the plan acted on, and the
        // approval is an event.
        let (seen, send) = server.next().await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (
                "PATCH",
                "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production"
            )
        );
        assert_eq!(seen.content_type, "application/json-patch+json");
        let path = "/metadata/annotations/panka.io~1approve-plan";
        assert_eq!(
            seen.body,
            json!([
                {"op": "test", "path": path, "value": "ab12cd34"},
                {"op": "remove", "path": path},
            ])
        );
        respond(send, 200, &json!({}));
        let event = expect_event(&mut server, "Approved", false).await;
        assert!(event["note"].as_str().unwrap().contains("ab12cd34"));
    };
    let (result, ()) = tokio::join!(pass, verify);
    assert!(result.is_err(), "the invalid commit is the pass's error");

    let (approved, _) = ctx.backends.state.pending(&key).await.unwrap().unwrap();
    let by = approved.approved.expect("the plan is approved").by;
    assert!(
        by.contains("annotation panka.io/approve-plan on Stack apps/shop-production"),
        "{by}"
    );

    // An annotation naming another plan is refused, said as a warning, and taken off too.
    let mut obj = stack_object();
    obj.finalizers_mut().push(FINALIZER.into());
    obj.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), "ffff0000".into());
    let pass = crate::reconcile::reconcile(Arc::new(obj), ctx.clone());
    let verify = async {
        let (seen, send) = server.next().await;
        assert!(seen.path.ends_with("/status"), "{}", seen.path);
        respond(send, 200, &json!({}));
        // Someone annotated again meanwhile: the test op fails, the new annotation stays (its
        // change brings the next pass), and the refusal is still said.
        let (seen, send) = server.next().await;
        assert_eq!(seen.content_type, "application/json-patch+json");
        assert_eq!(seen.body[0]["value"], "ffff0000");
        respond(
            send,
            422,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": "the server rejected our request: test operation failed"}),
        );
        let event = expect_event(&mut server, "ApprovalRejected", true).await;
        let note = event["note"].as_str().unwrap();
        assert!(note.contains("ffff0000 is not the pending plan"), "{event}");
    };
    let (result, ()) = tokio::join!(pass, verify);
    assert!(result.is_err());
}

#[tokio::test]
async fn the_finalizer_is_added_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client.clone(), None));
    let ctx = context(dir.path(), kube);
    let obj = stack_object();
    let pass = crd::reconcile_with_finalizer(client, Arc::new(obj.clone()), ctx);
    let verify = async {
        let (seen, send) = server.next().await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (
                "PATCH",
                "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production"
            )
        );
        assert_eq!(seen.content_type, "application/json-patch+json");
        assert_eq!(
            seen.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
            ])
        );
        let mut with = obj.clone();
        with.finalizers_mut().push(FINALIZER.into());
        respond(send, 200, &serde_json::to_value(&with).unwrap());
    };
    let (result, ()) = tokio::join!(pass, verify);
    let action = result.expect("the finalizer was added");
    // The watch brings the object back with its finalizer: the reconcile runs then.
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    server.none(Duration::from_millis(200)).await;
}

fn deleting(policy: Option<DeletionPolicy>) -> Stack {
    let mut obj = stack_object();
    obj.spec.deletion_policy = policy;
    obj.finalizers_mut().push(FINALIZER.into());
    obj.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    obj
}

async fn expect_finalizer_removed(server: &mut ApiServer, obj: &Stack) {
    let (seen, send) = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "PATCH",
            "/apis/panka.io/v1alpha1/namespaces/apps/stacks/shop-production"
        )
    );
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    let mut gone = obj.clone();
    gone.metadata.finalizers = None;
    respond(send, 200, &serde_json::to_value(&gone).unwrap());
}

#[tokio::test]
async fn orphan_only_removes_the_finalizer_and_leaves_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client.clone(), None));
    let ctx = context(dir.path(), kube);
    let obj = deleting(None);
    let pass = crd::reconcile_with_finalizer(client, Arc::new(obj.clone()), ctx);
    let (result, ()) = tokio::join!(pass, expect_finalizer_removed(&mut server, &obj));
    result.unwrap();
    server.none(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn delete_keeps_the_finalizer_until_the_destroy_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client.clone(), None));
    let ctx = context(dir.path(), kube);
    // State says the stack was applied, but its desired state no longer loads and this
    // process never loaded it: the destroy cannot know the region, fails, and the finalizer
    // stays (the error names the way out).
    let key = crate::state::StateKey::new("shop", "production").unwrap();
    let file = dir.path().join("state").join(key.state_path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        r#"{"formatVersion": 1, "stack": "shop", "environment": "production", "lineage": "l-1", "serial": 1, "fence": 1}"#,
    )
    .unwrap();
    assert!(ctx.backends.state.read(&key).await.unwrap().is_some());
    let obj = deleting(Some(DeletionPolicy::Delete));
    let err = crd::reconcile_with_finalizer(client.clone(), Arc::new(obj.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deletionPolicy: Orphan"), "{err}");
    server.none(Duration::from_millis(200)).await;

    // Nothing applied (another environment's Stack): nothing to destroy, the finalizer goes.
    let mut other = deleting(Some(DeletionPolicy::Delete));
    other.spec.environment = "staging".into();
    let pass = crd::reconcile_with_finalizer(client, Arc::new(other.clone()), ctx);
    let (result, ()) = tokio::join!(pass, expect_finalizer_removed(&mut server, &other));
    result.unwrap();
}

/// A Lease the verifier keeps, answering the lease manager's get, create and patch.
struct LeaseServer {
    lease: Option<Value>,
}

impl LeaseServer {
    async fn answer(&mut self, server: &mut ApiServer) -> String {
        let (seen, send) = server.next().await;
        assert!(
            seen.path
                .starts_with("/apis/coordination.k8s.io/v1/namespaces/apps/leases"),
            "{}",
            seen.path
        );
        match seen.method.as_str() {
            "GET" => match &self.lease {
                Some(l) => respond(send, 200, l),
                None => not_found(send),
            },
            "POST" => {
                let mut l = seen.body.clone();
                l["metadata"]["resourceVersion"] = json!("1");
                l["metadata"]["namespace"] = json!("apps");
                self.lease = Some(l.clone());
                respond(send, 201, &l);
            }
            "PATCH" => {
                let l = self.lease.as_mut().expect("patch after create");
                let spec = l["spec"]
                    .as_object_mut()
                    .map(std::mem::take)
                    .unwrap_or_default();
                let mut merged: BTreeMap<String, Value> = spec.into_iter().collect();
                for (k, v) in seen.body["spec"].as_object().cloned().unwrap_or_default() {
                    if v.is_null() {
                        merged.remove(&k);
                    } else {
                        merged.insert(k, v);
                    }
                }
                l["spec"] = serde_json::to_value(merged).unwrap();
                respond(send, 200, l);
            }
            other => panic!("unexpected {other} on a lease"),
        }
        seen.method
    }
}

/// `replica-a` holding a 2 s Lease (renewed 1 s before it runs out), and the requests it took.
async fn leading() -> (
    ApiServer,
    LeaseServer,
    CancellationToken,
    lease::Leadership,
    Vec<String>,
) {
    let (client, mut server) = client();
    let stop = CancellationToken::new();
    let timing = lease::Timing {
        duration: 2,
        renew_before: 1,
    };
    let acquire = tokio::spawn({
        let stop = stop.clone();
        async move {
            lease::Leadership::acquire(
                client,
                "apps",
                "panka-controller",
                "replica-a",
                timing,
                &stop,
            )
            .await
        }
    });
    let mut lease = LeaseServer { lease: None };
    // Acquire: look, create, take (and count the transition).
    let mut methods = Vec::new();
    while !acquire.is_finished() {
        tokio::select! {
            m = lease.answer(&mut server) => methods.push(m),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let leadership = acquire.await.unwrap().unwrap().expect("leading");
    (server, lease, stop, leadership, methods)
}

#[tokio::test]
async fn the_lease_is_acquired_renewed_and_its_loss_noticed() {
    let (mut server, mut lease, stop, mut leadership, methods) = leading().await;
    assert_eq!(&methods[..2], ["GET", "POST"], "{methods:?}");
    assert!(methods.contains(&"PATCH".to_owned()), "{methods:?}");
    let held = lease.lease.clone().unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "replica-a");
    assert_eq!(held["spec"]["leaseDurationSeconds"], 2);

    // Renew: within the lease's duration, a patch moves renewTime.
    let renewed = async {
        loop {
            let before = lease.lease.as_ref().unwrap()["spec"]["renewTime"].clone();
            if lease.answer(&mut server).await == "PATCH"
                && lease.lease.as_ref().unwrap()["spec"]["renewTime"] != before
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), renewed)
        .await
        .expect("renewed in time");

    // Lose: another replica holds it now; the next look notices.
    let other = k8s_openapi::jiff::Timestamp::now().to_string();
    let l = lease.lease.as_mut().unwrap();
    l["spec"]["holderIdentity"] = json!("replica-b");
    l["spec"]["renewTime"] = json!(other);
    l["spec"]["leaseDurationSeconds"] = json!(60);
    let lost = async {
        tokio::select! {
            () = leadership.lost() => {}
            () = async { loop { lease.answer(&mut server).await; } } => {}
        }
    };
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .expect("the loss is noticed");
    stop.cancel();
}

#[tokio::test]
async fn a_lease_that_cannot_be_renewed_is_given_up_before_it_runs_out() {
    let (mut server, _lease, stop, mut leadership, _) = leading().await;
    let acquired = std::time::Instant::now();
    // The API server is unreachable from now on: every request fails, so the manager can
    // neither renew nor tell; the holder stops on its own, before the Lease runs out.
    let lost = async {
        tokio::select! {
            () = leadership.lost() => {}
            () = async {
                loop {
                    let (seen, send) = server.next().await;
                    assert!(seen.path.ends_with("/leases/panka-controller"), "{}", seen.path);
                    respond(send, 503, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503}));
                }
            } => {}
        }
    };
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .expect("the loss is noticed");
    let after = acquired.elapsed();
    assert!(
        after >= Duration::from_millis(1_000) && after < Duration::from_secs(2),
        "given up {after:?} after the last renewal: after the renewal was due, before the 2 s Lease runs out"
    );
    stop.cancel();
}

#[tokio::test]
async fn stacks_are_listed_and_watched_and_only_the_shards_own_pass() {
    let (client, mut server) = client();
    let api: kube::Api<Stack> = kube::Api::namespaced(client, "apps");
    let shard = crate::daemon::shard::Shard { index: 0, count: 2 };
    let (store, triggers) = crate::daemon::watch_stacks(
        api,
        kube::runtime::watcher::Config::default()
            .labels("app.kubernetes.io/managed-by=panka-controller"),
        shard,
        Vec::new(),
    );
    let objects: Vec<Stack> = ["development", "staging", "production"]
        .iter()
        .map(|env| {
            crate::daemon::poll::stack_object("notifications-platform", env, "u", "main", "apps")
        })
        .collect();
    let mine: Vec<String> = objects
        .iter()
        .filter(|o| shard.owns(&o.spec.stack, &o.spec.environment))
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    // Pinned by the hash (see daemon::shard): staging is shard 0 of 2, the others shard 1.
    assert_eq!(mine, ["notifications-platform-staging"]);
    let consume = async {
        use futures::StreamExt;
        let mut triggers = triggers;
        let first = triggers.next().await.unwrap();
        // Keep watching a moment (the watch request follows the list); nothing else passes.
        let next = tokio::time::timeout(Duration::from_millis(500), triggers.next()).await;
        assert!(next.is_err(), "only the shard's object is queued");
        first.name
    };
    let verify = async {
        let (seen, send) = server.next().await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/apis/panka.io/v1alpha1/namespaces/apps/stacks")
        );
        assert!(
            seen.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dpanka-controller"),
            "{}",
            seen.query
        );
        let items: Vec<Value> = objects
            .iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap();
                v["metadata"]["resourceVersion"] = json!("5");
                v
            })
            .collect();
        respond(
            send,
            200,
            &json!({"apiVersion": "panka.io/v1alpha1", "kind": "StackList", "metadata": {"resourceVersion": "5"}, "items": items}),
        );
        // The watch that follows the list.
        let (seen, open) = server.next().await;
        assert!(seen.query.contains("watch=true"), "{}", seen.query);
        open
    };
    let (first, _open) = tokio::join!(consume, verify);
    assert_eq!(first, "notifications-platform-staging");
    assert_eq!(
        store.state().len(),
        3,
        "the store holds every object; only the shard's are queued"
    );
}

#[test]
fn the_rbac_rules_grant_nothing_the_code_does_not_use() {
    // Every grant is exercised by a scenario above (or is the watch of a kind CRD mode lists):
    // the chart asks for no more than the code needs.
    let used: Vec<(&str, &str, &[&str])> = vec![
        ("coordination.k8s.io", "leases", &["get", "create", "patch"]),
        (
            "panka.io",
            "stacks",
            &["list", "watch", "create", "patch", "delete"],
        ),
        ("panka.io", "stacks/status", &["patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    let kinds = [
        "services",
        "microservices",
        "workers",
        "rdsinstances",
        "dynamodbtables",
        "s3buckets",
        "sqsqueues",
        "elasticacheredises",
    ];
    for (g, r, v) in granted() {
        let known = used
            .iter()
            .any(|(ug, ur, uv)| *ug == g && *ur == r && uv.contains(&v.as_str()))
            || (g == "panka.io"
                && kinds.contains(&r.as_str())
                && ["list", "watch"].contains(&v.as_str()));
        assert!(
            known,
            "the chart grants {v} on {g}/{r}, which the controller never does"
        );
        assert_ne!(r, "secrets", "no secrets");
    }
}

#[tokio::test]
async fn crd_mode_waits_for_every_kind_and_queues_only_the_shards_stacks_a_change_feeds() {
    use futures::FutureExt;
    let (client, mut server) = client();
    let shard = crate::daemon::shard::Shard { index: 0, count: 2 };
    // Three Stacks of one stack; by the pinned hash only staging is shard 0's.
    let (stacks, mut writer) = kube::runtime::reflector::store::<Stack>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    for env in ["development", "staging", "production"] {
        let mut obj = Stack::new(
            &format!("notifications-platform-{env}"),
            StackResourceSpec {
                stack: "notifications-platform".into(),
                environment: env.into(),
                ..StackResourceSpec::default()
            },
        );
        obj.metadata.namespace = Some("apps".into());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(obj));
    }
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let started = crd::CrdSource::start(
        client,
        Some("apps"),
        stacks,
        Arc::new(crate::daemon::owner(shard, Vec::new())),
        queue,
        stop.clone(),
    );
    let mut ready = started.ready;
    let kinds = [
        ("services", "ServiceList"),
        ("microservices", "MicroServiceList"),
        ("workers", "WorkerList"),
        ("rdsinstances", "RDSList"),
        ("dynamodbtables", "DynamoDBList"),
        ("s3buckets", "S3List"),
        ("sqsqueues", "SQSList"),
        ("elasticacheredises", "ElastiCacheRedisList"),
    ];
    let list = |kind: &str, items: Vec<Value>| json!({"apiVersion": "panka.io/v1alpha1", "kind": kind, "metadata": {"resourceVersion": "7"}, "items": items});
    // Every kind is listed in the watched namespace; the Service list is held back.
    let mut listed = Vec::new();
    let mut held = None;
    let mut watches = Vec::new();
    while listed.len() < kinds.len() {
        let (seen, send) = server.next().await;
        assert_eq!(seen.method, "GET");
        if seen.query.contains("watch=true") {
            watches.push(send);
            continue;
        }
        let plural = seen
            .path
            .strip_prefix("/apis/panka.io/v1alpha1/namespaces/apps/")
            .unwrap_or_else(|| panic!("listed outside the namespace: {}", seen.path))
            .to_owned();
        let (_, kind) = kinds
            .iter()
            .find(|(p, _)| *p == plural)
            .unwrap_or_else(|| panic!("unexpected list {plural}"));
        if plural == "services" {
            held = Some((send, *kind));
        } else {
            respond(send, 200, &list(kind, Vec::new()));
        }
        listed.push(plural);
    }
    listed.sort();
    let mut expected: Vec<&str> = kinds.iter().map(|(p, _)| *p).collect();
    expected.sort();
    assert_eq!(listed, expected, "every kind listed once");
    // Not ready while one kind is unlisted: a pass then would see a stack without its
    // services and plan to delete them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        (&mut ready).now_or_never().is_none(),
        "ready before every kind is listed"
    );
    let (send, kind) = held.unwrap();
    let mut service = panka_crds::resource::Service::new(
        "email-service",
        panka_crds::resource::ServiceResourceSpec {
            stack: "notifications-platform".into(),
            infra_defaults: None,
        },
    );
    service.metadata.namespace = Some("apps".into());
    service.metadata.resource_version = Some("7".into());
    respond(
        send,
        200,
        &list(kind, vec![serde_json::to_value(&service).unwrap()]),
    );
    let watch_rest = async {
        loop {
            let (seen, send) = server.next().await;
            assert!(seen.query.contains("watch=true"), "{}", seen.query);
            watches.push(send);
        }
    };
    tokio::select! {
        () = ready => {}
        () = watch_rest => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(10)) => panic!("not ready after every kind was listed"),
    }
    // The Service feeds all three Stacks; only this shard's one is queued.
    let first = tokio::time::timeout(Duration::from_secs(5), queued.recv())
        .await
        .expect("queued")
        .unwrap();
    assert_eq!(first.name, "notifications-platform-staging");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        queued.try_recv().is_err(),
        "other shards' Stacks are not queued"
    );
    stop.cancel();
    for task in started.tasks {
        task.await.unwrap();
    }
}

/// A CRD source started over `stacks`, every Service and component kind listed empty.
async fn crd_source_over(stacks: Vec<Stack>) -> (crd::Started, ApiServer, CancellationToken) {
    let (client, mut server) = client();
    let (store, mut writer) = kube::runtime::reflector::store::<Stack>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    for s in stacks {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(s));
    }
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    // The writer stays alive with the store for the test's length.
    std::mem::forget(writer);
    let (queue, _queued) = tokio::sync::mpsc::unbounded_channel();
    std::mem::forget(_queued);
    let stop = CancellationToken::new();
    let mut started = crd::CrdSource::start(
        client,
        Some("apps"),
        store,
        Arc::new(|_: &Stack| true),
        queue,
        stop.clone(),
    );
    let mut listed = 0;
    let mut watches = Vec::new();
    while listed < 8 {
        let (seen, send) = server.next().await;
        if seen.query.contains("watch=true") {
            watches.push(send);
            continue;
        }
        let kind = seen.path.rsplit('/').next().unwrap_or_default().to_owned();
        respond(
            send,
            200,
            &json!({"apiVersion": "panka.io/v1alpha1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": []}),
        );
        listed += 1;
    }
    tokio::time::timeout(Duration::from_secs(10), &mut started.ready)
        .await
        .expect("ready");
    std::mem::forget(watches);
    (started, server, stop)
}

fn claimant(name: &str, uid: &str, created: &str) -> Stack {
    let mut s = Stack::new(
        name,
        StackResourceSpec {
            stack: "shop".into(),
            environment: "production".into(),
            ..StackResourceSpec::default()
        },
    );
    s.metadata.namespace = Some("apps".into());
    s.metadata.uid = Some(uid.into());
    s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().unwrap(),
    ));
    s
}

#[tokio::test]
async fn the_first_stack_to_claim_a_target_keeps_it_and_an_empty_one_applies_nothing() {
    let first = claimant("shop-production", "uid-1", "2026-12-01T10:00:00Z");
    let second = claimant("shop-prod-copy", "uid-2", "2026-12-02T10:00:00Z");
    let (started, _server, stop) = crd_source_over(vec![second.clone(), first.clone()]).await;
    let source = &started.source;
    assert_eq!(source.claimed_by(&first), None);
    assert_eq!(
        source.claimed_by(&second).as_deref(),
        Some("Stack apps/shop-production")
    );
    // The holder's resources have not arrived: nothing is planned (which would delete all).
    let revision = source.revision(&first).expect("a revision");
    let err = source
        .desired(&revision, &first, crate::reconcile::Purpose::Deploy)
        .expect_err("refused");
    assert!(
        err.contains("no Service or component resource names stack `shop`"),
        "{err}"
    );
    // Being deleted (its resources gone first, as `kubectl delete -f` does), it loads empty:
    // a Delete policy destroys with its own provider and region.
    let mut deleting = first.clone();
    deleting.spec.provider = Some(panka_crds::spec::Provider {
        region: "us-east-1".into(),
        ..Default::default()
    });
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-03T10:00:00Z".parse().unwrap(),
        ));
    let (desired, _) = source
        .desired(&revision, &deleting, crate::reconcile::Purpose::Remove)
        .expect("loads")
        .expect("deploys");
    assert!(desired.components.is_empty());
    assert_eq!(desired.provider.region, "us-east-1");
    stop.cancel();
}

/// A source every target of which another resource manages.
#[derive(Debug)]
struct Claimed;

impl StackSource for Claimed {
    fn claimed_by(&self, _target: &Stack) -> Option<String> {
        Some("Stack apps/shop-production".into())
    }
    fn revision(&self, _target: &Stack) -> Option<String> {
        unreachable!("a claimed target is not read")
    }
    fn read(
        &self,
        _revision: &str,
        _target: &Stack,
    ) -> Result<panka_core::source::FileTree, panka_core::diag::Diagnostics> {
        unreachable!("a claimed target is not read")
    }
}

#[tokio::test]
async fn a_second_claimant_says_so_in_its_own_status_and_touches_no_state_nor_aws() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut server) = client();
    let kube = Arc::new(Kube::new(client, None));
    let mut ctx = context(dir.path(), kube);
    Arc::get_mut(&mut ctx).expect("one owner").source = Arc::new(Claimed);
    let key = panka_core::keys::StateKey::new("shop", "production").unwrap();
    let mut obj = stack_object();
    obj.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), "ab12cd34".into());
    let pass = crate::reconcile::reconcile(Arc::new(obj.clone()), ctx.clone());
    let verify = async {
        let (seen, send) = server.next().await;
        assert!(
            seen.path.ends_with("/stacks/shop-production/status"),
            "{}",
            seen.path
        );
        let synced = condition(&seen.body["status"], "Synced");
        assert_eq!(synced["status"], "False");
        assert!(
            synced["message"]
                .as_str()
                .unwrap()
                .contains("Stack apps/shop-production already manages stack `shop`"),
            "{synced}"
        );
        respond(send, 200, &json!({}));
        expect_event(&mut server, "Failed", true).await;
        // The approval annotation is not acted on (it would approve the holder's plan).
        server.none(Duration::from_millis(300)).await;
    };
    let (result, ()) = tokio::join!(pass, verify);
    assert!(result.is_err());
    assert!(
        ctx.backends.state.sync(&key).await.unwrap().is_none(),
        "no sync.json written"
    );
    // Deleted with deletionPolicy Delete, it destroys nothing and lets the finalizer go.
    let mut deleting = obj;
    deleting.spec.deletion_policy = Some(DeletionPolicy::Delete);
    let action = crate::reconcile::destroy(Arc::new(deleting), ctx.clone())
        .await
        .expect("nothing to destroy");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}
