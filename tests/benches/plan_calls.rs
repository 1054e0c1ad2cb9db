//! Converged-plan benchmark (issue 4, item 8): AWS calls per component by kind against the
//! fewest the AWS APIs allow, and the wall time of `Engine::prepare`, for a generated stack of
//! 200 components in 20 services.
//!
//! Run: `cargo bench --profile dev -p panka-tests --bench plan_calls`.
//!
//! 1. A repository with one stack is generated into a temporary directory: 20 services of 10
//!    components each, mixing every kind panka deploys (MicroService with `infra.yaml`, some
//!    behind the load balancer, some autoscaled, some with config files; Worker; RDS; DynamoDB;
//!    S3; SQS standard, FIFO and with dead-letter queues; ElastiCacheRedis, some with an AUTH
//!    token), wired with `dependsOn` and `valueFrom` edges inside and across services. It goes
//!    through the real pipeline (`load_stack`, `plan_input`).
//! 2. It is applied once with the engine against the local emulator (local state and locks), so
//!    it converges. A failed apply exits non-zero: a broken generator must not go unnoticed.
//! 3. `Engine::prepare` (observe + plan, no lock) is timed on a fresh engine per run (a fresh
//!    call counter and empty driver caches, as a `panka plan` process has), then once more on
//!    the last engine (warm caches, as the controller's reconcile loop has). The plan should be
//!    empty; a warning lists what it would change.
//! 4. To attribute calls to kinds (the call counter keys by AWS service and operation, and
//!    MicroService, Worker and the shared resources use the same operations), every component is
//!    observed once more with fresh drivers per kind, with the identifiers state recorded, which
//!    is exactly what `prepare` does; the per-kind sums are checked against `prepare`'s total.
//!
//! The floors ("min/comp") assume the same fields are compared as today (no loss of drift
//! detection), identifiers recorded in state may be reused, and every batch or list form an API
//! offers is used; the reasoning is next to each number in [`floors`]. Wall times come from the
//! emulator, which serves one request at a time in Python: compare them between runs of this
//! benchmark, not with AWS.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use panka_controller::backend::Backends;
use panka_controller::driver::{Ctx, Drivers};
use panka_controller::engine::{EngineOptions, Prepared, Quiet};
use panka_controller::lock::{LockOptions, Locker};
use panka_controller::state::{Snapshot, StateKey};
use panka_controller::validate::{load_stack, plan_input};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, ComponentSpec, DesiredStack};
use panka_core::plan::Action;
use panka_core::resolve::Options;
use panka_crds::Kind;
use panka_tests::emulator::{emulator, local_backends, unique_name};
use panka_tests::engine::TestEngine;

/// Services of the generated stack; each gets [`COMPONENTS_PER_SERVICE`] components.
const SERVICES: [&str; 20] = [
    "auth", "users", "billing", "catalog", "orders", "payments", "search", "shipping", "stock",
    "pricing", "reviews", "notify", "media", "reports", "audit", "ledger", "carts", "promos",
    "support", "gateway",
];
const COMPONENTS_PER_SERVICE: usize = 10;
/// Environment the stack is applied to (short, to keep AWS names well under their limits).
const ENV: &str = "dev";
/// Timed cold runs of `Engine::prepare`.
const PREPARE_RUNS: usize = 3;
/// Kinds in the order the table lists them.
const KINDS: [Kind; 7] = [
    Kind::MicroService,
    Kind::Worker,
    Kind::Sqs,
    Kind::DynamoDb,
    Kind::S3,
    Kind::Rds,
    Kind::ElastiCacheRedis,
];

/// Calls by (AWS service, operation), as [`panka_controller::driver::CallCounter`] reports them.
type Calls = BTreeMap<(String, String), u64>;

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("plan_calls: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let started = Instant::now();
    let repo = tempfile::tempdir().map_err(|e| format!("failed to create a temp dir: {e}"))?;
    let stack = unique_name("pc");
    let secrets = generate(repo.path(), &stack)?;
    let (desired, graph) = resolve(repo.path(), &stack)?;
    let expected = SERVICES.len() * COMPONENTS_PER_SERVICE;
    let made = desired
        .components
        .values()
        .filter(|c| !c.kind().is_stack_resource())
        .count();
    if made != expected {
        return Err(format!(
            "the generator made {made} components, not {expected}"
        ));
    }
    let census = Census::of(&desired);

    let env = emulator();
    let sdk = env.sdk_config().await;
    create_secrets(&sdk, &secrets).await?;
    let (backends, _state_dir) = local_backends();
    let options = EngineOptions {
        health_timeout: Duration::from_secs(120),
        actor: "bench@local".into(),
        ..EngineOptions::default()
    };

    // 1. Converge.
    let t = Instant::now();
    let engine = new_engine(&sdk, &desired, &backends)?;
    let report = engine
        .apply(&desired, &graph, &options, &mut |_| true, &Quiet)
        .await
        .map_err(|e| format!("the first apply failed: {e}"))?
        .ok_or("the first apply was not approved")?;
    println!(
        "converged plan of {stack}/{ENV}: {} components in {} services, {} waves, against {}",
        desired.components.len(),
        SERVICES.len(),
        graph.waves.len(),
        env.endpoint
    );
    println!(
        "  first apply: {} created in {:.1} s, {} AWS calls",
        report.plan.summary.create,
        t.elapsed().as_secs_f64(),
        engine.calls().total()
    );

    // 2. The converged plan, cold: a fresh engine per run.
    let mut times = Vec::new();
    let mut cold: Vec<Calls> = Vec::new();
    let mut last = None;
    for _ in 0..PREPARE_RUNS {
        let e = new_engine(&sdk, &desired, &backends)?;
        let t = Instant::now();
        let prepared = e
            .prepare(&desired, &graph, &options)
            .await
            .map_err(|err| format!("prepare failed: {err}"))?;
        times.push(t.elapsed());
        cold.push(e.calls().snapshot());
        warn_on_changes(&prepared);
        last = Some(e);
    }
    let last = last.ok_or("no prepare run")?;
    // Warm: the same engine again, as the controller runs it. Drivers keep nothing between
    // runs, so this measures what a controller's every reconcile costs.
    let before = last.calls().snapshot();
    let t = Instant::now();
    let prepared = last
        .prepare(&desired, &graph, &options)
        .await
        .map_err(|err| format!("prepare failed: {err}"))?;
    let warm_time = t.elapsed();
    let warm = minus(&last.calls().snapshot(), &before);
    warn_on_changes(&prepared);

    // 3. Calls by kind: the same observations, one fresh set of drivers per kind.
    let key = StateKey::new(&desired.name, &desired.environment).map_err(|e| e.to_string())?;
    let state = backends
        .state
        .read(&key)
        .await
        .map_err(|e| format!("failed to read state: {e}"))?
        .ok_or("the apply recorded no state")?;
    let mut by_kind: BTreeMap<&'static str, Calls> = BTreeMap::new();
    for kind in KINDS {
        by_kind.insert(
            kind.name(),
            observe_kind(&sdk, &desired, &state, kind).await?,
        );
    }
    // The stack-wide resources (`_stack/…`), each observed by its own driver once per stack.
    let shared_ctx = Ctx::new(sdk.clone(), &desired, false);
    let drivers = Drivers::new(&shared_ctx);
    for c in desired
        .components
        .values()
        .filter(|c| c.kind().is_stack_resource())
    {
        let driver = drivers
            .get(c.kind())
            .ok_or_else(|| format!("no driver for {}", c.kind()))?;
        driver
            .observe(&c.id, None)
            .await
            .map_err(|e| format!("observe {} failed: {e}", c.id))?;
    }
    let shared = shared_ctx.calls.snapshot();

    let cold_calls: u64 = cold[0].values().sum();
    let warm_calls: u64 = warm.values().sum();
    print_times(&times, cold_calls, warm_time, warm_calls);
    let out = table(&census, &by_kind, &shared, &cold[0], &warm);
    print!("{out}");
    let totals: Vec<u64> = cold.iter().map(|c| c.values().sum()).collect();
    if totals.windows(2).any(|w| w[0] != w[1]) {
        println!("note: cold runs made different numbers of calls: {totals:?}");
    }
    println!(
        "benchmark wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// -------------------------------------------------------------------------------------------
// The generated repository
// -------------------------------------------------------------------------------------------

/// A secret to create before the apply: name and JSON value.
struct SecretToCreate {
    name: String,
    value: String,
}

fn write(root: &Path, rel: &str, text: &str) -> Result<(), String> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("failed to create {}: {e}", parent.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("failed to write {}: {e}", path.display()))
}

/// Writes `stacks/{stack}` into `root`; returns the secrets its components read at creation.
///
/// Even services: api (MicroService behind the ALB), web (MicroService calling api), worker,
/// jobs (SQS + DLQ), events (SQS), table and sessions (DynamoDB), store (S3), db (RDS), cache.
/// Odd services: api (MicroService calling the previous service's api), worker, cron (Worker),
/// jobs (SQS + DLQ), events (FIFO SQS), retries (SQS), table (provisioned DynamoDB with a
/// stream), store and archive (S3), cache. Workers also feed the next service's `jobs` queue.
fn generate(root: &Path, stack: &str) -> Result<Vec<SecretToCreate>, String> {
    let base = format!("stacks/{stack}");
    let mut secrets = Vec::new();
    write(
        root,
        &format!("{base}/stack.yaml"),
        &format!(
            "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata:\n  name: {stack}\nspec:\n  provider: {{name: aws, region: us-east-1}}\n"
        ),
    )?;
    write(
        root,
        &format!("{base}/infra/defaults.yaml"),
        &format!(
            "apiVersion: infra.panka.io/v1\nkind: StackInfra\nmetadata: {{name: defaults, stack: {stack}}}\nspec:\n  networking: {{vpc: default}}\n  logging: {{retentionDays: 14}}\n  tags: {{team: bench}}\n"
        ),
    )?;
    write(
        root,
        &format!("{base}/environments/{ENV}/variables.yaml"),
        &format!(
            "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {{name: {ENV}, stack: {stack}}}\nspec: {{VERSION: v1.4.2}}\n"
        ),
    )?;
    let n = SERVICES.len();
    for (i, svc) in SERVICES.iter().enumerate() {
        let even = i % 2 == 0;
        let prev = SERVICES[(i + n - 1) % n];
        let next = SERVICES[(i + 1) % n];
        let sdir = format!("{base}/services/{svc}");
        write(
            root,
            &format!("{sdir}/service.yaml"),
            &format!(
                "apiVersion: core.panka.io/v1\nkind: Service\nmetadata:\n  name: {svc}\n  stack: {stack}\n  labels: {{team: team-{}}}\n",
                i % 5
            ),
        )?;
        let comp = |name: &str, file: &str, spec: &str| -> Result<(), String> {
            let kind = match file {
                "microservice.yaml" => "MicroService",
                "worker.yaml" => "Worker",
                "rds.yaml" => "RDS",
                "dynamodb.yaml" => "DynamoDB",
                "s3.yaml" => "S3",
                "sqs.yaml" => "SQS",
                _ => "ElastiCacheRedis",
            };
            write(
                root,
                &format!("{sdir}/components/{name}/{file}"),
                &format!(
                    "apiVersion: components.panka.io/v1\nkind: {kind}\nmetadata: {{name: {name}, service: {svc}, stack: {stack}}}\nspec:\n{spec}"
                ),
            )
        };
        let infra = |name: &str, spec: &str| -> Result<(), String> {
            write(
                root,
                &format!("{sdir}/components/{name}/infra.yaml"),
                &format!(
                    "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {{name: {name}, service: {svc}, stack: {stack}}}\nspec:\n{spec}"
                ),
            )
        };
        let autoscaling = "    autoscaling:\n      enabled: true\n      minReplicas: 1\n      maxReplicas: 4\n      policies:\n        - {type: targetTracking, metric: CPUUtilization, targetValue: 65}\n";

        // Stateful components.
        let db_secret = format!("/stacks/{stack}/{svc}/db-password");
        if even {
            let (engine, version) = if i % 4 == 0 {
                ("postgres", "15.4")
            } else {
                ("mysql", "8.0.35")
            };
            comp(
                "db",
                "rds.yaml",
                &format!(
                    "  engine: {{type: {engine}, version: \"{version}\"}}\n  instance:\n    class: db.t3.micro\n    storage: {{type: gp3, allocatedGB: 20}}\n  database:\n    name: {svc}db\n    username: dbadmin\n    passwordSecret: {{ref: {db_secret}}}\n  backup: {{retentionDays: 7}}\n"
                ),
            )?;
            secrets.push(SecretToCreate {
                name: db_secret.clone(),
                value: r#"{"password":"bench-only-password-1"}"#.into(),
            });
        }
        let auth = i % 4 == 1;
        let mut cache = format!(
            "  engine: {{version: \"7.0\"}}\n  cluster: {{mode: replication-group, nodeType: cache.t3.micro, numNodes: {}}}\n  security:\n    atRestEncryption: true\n    transitEncryption: {auth}\n",
            1 + i % 2
        );
        if auth {
            let name = format!("/stacks/{stack}/{svc}/redis-auth");
            let _ = writeln!(cache, "    authTokenSecret: {{ref: {name}, key: token}}");
            secrets.push(SecretToCreate {
                name,
                value: r#"{"token":"bench-only-auth-token-0123456789"}"#.into(),
            });
        }
        comp("cache", "elasticache.yaml", &cache)?;
        comp(
            "jobs",
            "sqs.yaml",
            &format!(
                "  visibilityTimeout: {}\n  messageRetentionPeriod: 345600\n  deadLetterQueue: {{enabled: true, maxReceiveCount: {}}}\n",
                60 + i,
                3 + i % 3
            ),
        )?;
        if even {
            comp(
                "events",
                "sqs.yaml",
                "  visibilityTimeout: 30\n  receiveWaitTimeSeconds: 20\n",
            )?;
        } else {
            comp(
                "events",
                "sqs.yaml",
                "  type: fifo\n  contentBasedDeduplication: true\n  visibilityTimeout: 45\n",
            )?;
            comp("retries", "sqs.yaml", "  delaySeconds: 30\n")?;
        }
        if even {
            comp(
                "table",
                "dynamodb.yaml",
                "  billingMode: PAY_PER_REQUEST\n  keys:\n    partition: {name: id, type: S}\n    sort: {name: createdAt, type: N}\n  ttl: {attribute: expiresAt}\n  pointInTimeRecovery: true\n",
            )?;
            comp(
                "sessions",
                "dynamodb.yaml",
                "  keys:\n    partition: {name: sessionId, type: S}\n  ttl: {attribute: expiresAt}\n",
            )?;
        } else {
            comp(
                "table",
                "dynamodb.yaml",
                "  billingMode: PROVISIONED\n  capacity: {read: 5, write: 5}\n  keys:\n    partition: {name: pk, type: S}\n    sort: {name: sk, type: S}\n  stream: {viewType: NEW_AND_OLD_IMAGES}\n",
            )?;
        }
        comp(
            "store",
            "s3.yaml",
            "  versioning: true\n  encryption: {type: AES256}\n  publicAccess: blocked\n  lifecycle: {noncurrentVersionExpirationDays: 30}\n",
        )?;
        if !even {
            comp(
                "archive",
                "s3.yaml",
                "  versioning: false\n  encryption: {type: AES256}\n  publicAccess: blocked\n  lifecycle: {expirationDays: 365}\n",
            )?;
        }

        // Containers.
        let image = |name: &str| {
            format!(
                "  image:\n    repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{svc}-{name}\n    tag: \"${{VERSION}}\"\n"
            )
        };
        let mut api = image("api");
        api.push_str("  container:\n    command: [\"/app/server\"]\n    args: [\"--port=8080\"]\n  ports:\n    - {name: http, port: 8080}\n  environment:\n");
        let _ = writeln!(api, "    - {{name: SERVICE_NAME, value: {svc}}}");
        api.push_str(&format!(
            "    - name: JOBS_QUEUE_URL\n      valueFrom: {{component: {svc}/jobs, output: url}}\n    - name: TABLE_NAME\n      valueFrom: {{component: {svc}/table, output: name}}\n    - name: CACHE_HOST\n      valueFrom: {{component: {svc}/cache, output: endpoint}}\n"
        ));
        if even {
            api.push_str(&format!(
                "    - name: DATABASE_HOST\n      valueFrom: {{component: {svc}/db, output: endpoint}}\n  secrets:\n    - {{name: DB_PASSWORD, secretRef: {db_secret}, key: password, envVar: DATABASE_PASSWORD}}\n"
            ));
        } else {
            api.push_str(&format!(
                "    - name: UPSTREAM_URL\n      valueFrom: {{component: {prev}/api, output: url}}\n"
            ));
        }
        if i % 4 == 0 {
            api.push_str("  configs:\n    mountPath: /config\n    files: [app.yaml]\n");
            write(
                root,
                &format!("{sdir}/components/api/configs/app.yaml"),
                &format!(
                    "service: {svc}\nlogLevel: info\nmaxConnections: {}\n",
                    50 + i
                ),
            )?;
        }
        api.push_str("  healthCheck:\n    liveness:\n      http: {path: /healthz, port: 8080}\n      periodSeconds: 30\n");
        let _ = writeln!(api, "  dependsOn: [{svc}/store]");
        comp("api", "microservice.yaml", &api)?;
        let mut api_infra = format!(
            "  resources: {{cpu: {}, memory: {}}}\n  scaling:\n    replicas: 2\n",
            256 << (i % 2),
            512 << (i % 2)
        );
        if i % 3 == 0 {
            api_infra.push_str(autoscaling);
        }
        if even {
            api_infra.push_str("  networking:\n    loadBalancer: {enabled: true}\n");
        }
        infra("api", &api_infra)?;
        if even {
            let mut web = image("web");
            web.push_str(&format!(
                "  ports:\n    - {{name: http, port: 3000}}\n  environment:\n    - name: API_URL\n      valueFrom: {{component: {svc}/api, output: url}}\n    - name: SESSIONS_TABLE\n      valueFrom: {{component: {svc}/sessions, output: name}}\n"
            ));
            comp("web", "microservice.yaml", &web)?;
            infra(
                "web",
                "  resources: {cpu: 256, memory: 512}\n  scaling: {replicas: 1}\n",
            )?;
        }

        let mut worker = image("worker");
        worker.push_str(&format!(
            "  container:\n    command: [\"/app/worker\"]\n  environment:\n    - name: QUEUE_URL\n      valueFrom: {{component: {svc}/jobs, output: url}}\n    - name: EVENTS_URL\n      valueFrom: {{component: {svc}/events, output: url}}\n    - name: BUCKET\n      valueFrom: {{component: {svc}/store, output: name}}\n    - name: HANDOFF_QUEUE_URL\n      valueFrom: {{component: {next}/jobs, output: url}}\n"
        ));
        comp("worker", "worker.yaml", &worker)?;
        let mut worker_infra =
            "  resources: {cpu: 256, memory: 512}\n  scaling:\n    replicas: 1\n".to_string();
        if i % 5 == 0 {
            worker_infra.push_str(autoscaling);
        }
        infra("worker", &worker_infra)?;
        if !even {
            let mut cron = image("cron");
            cron.push_str(&format!(
                "  container:\n    command: [\"/app/cron\", \"--every=5m\"]\n  environment:\n    - name: TABLE_NAME\n      valueFrom: {{component: {svc}/table, output: name}}\n    - name: RETRIES_URL\n      valueFrom: {{component: {svc}/retries, output: url}}\n  dependsOn: [{svc}/archive]\n"
            ));
            comp("cron", "worker.yaml", &cron)?;
        }
    }
    Ok(secrets)
}

fn resolve(root: &Path, stack: &str) -> Result<(DesiredStack, Graph), String> {
    let loaded = load_stack(root, stack).map_err(|(d, sources)| {
        format!("the generated stack does not load:\n{}", d.render(&sources))
    })?;
    plan_input(&loaded, ENV, &Options::default())
        .map_err(|d| format!("the generated stack does not resolve:\n{d}"))
}

async fn create_secrets(sdk: &SdkConfig, secrets: &[SecretToCreate]) -> Result<(), String> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    for s in secrets {
        client
            .create_secret()
            .name(&s.name)
            .secret_string(&s.value)
            .send()
            .await
            .map_err(|e| format!("failed to create secret {}: {e}", s.name))?;
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Measuring
// -------------------------------------------------------------------------------------------

fn new_engine(
    sdk: &SdkConfig,
    _desired: &DesiredStack,
    backends: &Backends,
) -> Result<TestEngine, String> {
    let locker = Locker::new(backends.locks.clone(), LockOptions::default())
        .map_err(|e| format!("failed to make a locker: {e}"))?;
    Ok(TestEngine::new(sdk.clone(), backends.clone(), locker))
}

/// Prints a warning for every change a converged plan should not have.
fn warn_on_changes(prepared: &Prepared) {
    for p in prepared.plan.all().filter(|p| p.action.is_change()) {
        let what = match &p.action {
            Action::Replace { reason } => format!("replace ({reason})"),
            Action::Conflict { reason } => format!("conflict ({reason})"),
            other => panka_controller::engine::action_name(other).to_string(),
        };
        let fields: Vec<String> = p
            .diffs
            .iter()
            .map(|d| {
                let show = |v: &Option<panka_core::plan::FieldValue>| {
                    v.as_ref().map_or_else(|| "-".to_string(), |v| v.display())
                };
                format!("{}: {} -> {}", d.field, show(&d.old), show(&d.new))
            })
            .collect();
        println!(
            "warning: the converged plan changes {} ({}): {what}{}{}",
            p.id,
            p.kind,
            if p.drift { ", drift" } else { "" },
            if fields.is_empty() {
                String::new()
            } else {
                format!("; {}", fields.join("; "))
            }
        );
    }
}

/// Observes every component of `kind` as `prepare` does (one `observe_many` per kind, with the
/// identifiers state recorded, then `look_up`), with a fresh set of drivers, and returns the
/// calls made.
async fn observe_kind(
    sdk: &SdkConfig,
    desired: &DesiredStack,
    state: &Snapshot,
    kind: Kind,
) -> Result<Calls, String> {
    let ctx = Ctx::new(sdk.clone(), desired, false);
    let drivers = Drivers::new(&ctx);
    let items: Vec<(ComponentId, Option<BTreeMap<String, String>>)> = desired
        .components
        .values()
        .filter(|c| c.kind() == kind)
        .map(|c| {
            let recorded = state
                .document
                .components
                .get(&c.id.to_string())
                .map(|r| r.identifiers.clone());
            (c.id.clone(), recorded)
        })
        .collect();
    let driver = drivers
        .get(kind)
        .ok_or_else(|| format!("no driver for {kind}"))?;
    driver
        .observe_many(&items, EngineOptions::default().concurrency)
        .await
        .map_err(|e| format!("observe {kind} failed: {e}"))?;
    let of_kind: Vec<_> = desired
        .components
        .values()
        .filter(|c| c.kind() == kind)
        .collect();
    driver
        .look_up(&of_kind)
        .await
        .map_err(|e| format!("look up {kind} failed: {e}"))?;
    Ok(ctx.calls.snapshot())
}

fn minus(after: &Calls, before: &Calls) -> Calls {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_times(times: &[Duration], cold_calls: u64, warm: Duration, warm_calls: u64) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let (Some(min), Some(median)) = (sorted.first(), sorted.get(sorted.len() / 2)) else {
        // No timed run: nothing to report.
        return;
    };
    let runs: Vec<String> = times.iter().map(|t| format!("{:.0}", ms(*t))).collect();
    // The emulator answers one request at a time, so time per call is what it costs there.
    let per_call = |d: Duration, calls: u64| ms(d) / calls.max(1) as f64;
    println!(
        "  Engine::prepare, fresh engine per run ({} runs): median {:.0} ms, min {:.0} ms (runs: {} ms); {cold_calls} AWS calls, {:.1} ms per call",
        times.len(),
        ms(*median),
        ms(*min),
        runs.join(", "),
        per_call(*median, cold_calls)
    );
    println!(
        "  Engine::prepare, same engine again (warm driver caches): {:.0} ms; {warm_calls} AWS calls, {:.1} ms per call",
        ms(warm),
        per_call(warm, warm_calls)
    );
}

// -------------------------------------------------------------------------------------------
// Floors
// -------------------------------------------------------------------------------------------

/// What the floors depend on, counted from the desired stack.
#[derive(Debug, Default)]
struct Census {
    count: BTreeMap<&'static str, usize>,
    /// MicroServices behind the load balancer.
    behind_alb: usize,
    /// Autoscaled services, by kind.
    autoscaled: BTreeMap<&'static str, usize>,
    /// Member cache clusters of all replication groups.
    cache_members: usize,
    /// Distinct secrets referenced by name, by kind.
    secret_names: BTreeMap<&'static str, std::collections::BTreeSet<String>>,
}

impl Census {
    fn of(desired: &DesiredStack) -> Census {
        let mut c = Census::default();
        for comp in desired.components.values() {
            let kind = comp.kind().name();
            *c.count.entry(kind).or_default() += 1;
            let infra = comp.infra.as_ref();
            let lb = infra
                .and_then(|i| i.networking.as_ref())
                .and_then(|n| n.load_balancer.as_ref())
                .is_some_and(|lb| lb.enabled.unwrap_or(false));
            if lb && comp.kind() == Kind::MicroService {
                c.behind_alb += 1;
            }
            let auto = infra
                .and_then(|i| i.scaling.as_ref())
                .and_then(|s| s.autoscaling.as_ref())
                .is_some_and(|a| a.enabled.unwrap_or(false));
            if auto {
                *c.autoscaled.entry(kind).or_default() += 1;
            }
            let secrets = match &comp.spec {
                ComponentSpec::MicroService(s) => s.secrets.as_slice(),
                ComponentSpec::Worker(s) => s.secrets.as_slice(),
                _ => &[],
            };
            for s in secrets.iter().filter(|s| !s.secret_ref.starts_with("arn:")) {
                c.secret_names
                    .entry(kind)
                    .or_default()
                    .insert(s.secret_ref.clone());
            }
            if let ComponentSpec::ElastiCacheRedis(s) = &comp.spec {
                c.cache_members += s.cluster.num_nodes as usize;
            }
        }
        c
    }

    fn n(&self, kind: Kind) -> usize {
        self.count.get(kind.name()).copied().unwrap_or(0)
    }
}

/// Calls needed to cover `n` items at `per_call` items a call.
fn batches(n: usize, per_call: usize) -> f64 {
    n.div_ceil(per_call) as f64
}

/// One operation's floor for all components of a kind: (AWS service, operation, calls, why).
type Floor = (&'static str, &'static str, f64, &'static str);

/// The fewest calls a converged observe of every component of `kind` needs, by operation.
fn floors(kind: Kind, c: &Census) -> Vec<Floor> {
    let n = c.n(kind);
    let auto = c.autoscaled.get(kind.name()).copied().unwrap_or(0);
    let secrets = c.secret_names.get(kind.name()).map_or(0, |s| s.len());
    // MicroService and Worker: one ECS service each, read the same way.
    let ecs = || -> Vec<Floor> {
        vec![
            // DescribeServices takes up to 10 services per call, tags included (include=TAGS).
            (
                "ECS",
                "DescribeServices",
                batches(n, 10),
                "10 services per call, tags inline",
            ),
            // Revisions are immutable: while the service runs the revision state recorded
            // (identifiers.taskDefinitionArn) and a hash of the rendered definition recorded at
            // apply equals the desired render, there is nothing to read. Describe on mismatch.
            (
                "ECS",
                "DescribeTaskDefinition",
                0.0,
                "immutable; skip when the recorded revision runs",
            ),
            // Every log group of the stack shares the prefix /panka/{stack}/{env}/; one listing
            // returns up to 50 groups with their retention.
            (
                "CloudWatch Logs",
                "DescribeLogGroups",
                batches(n, 50),
                "one stack prefix, 50 per page",
            ),
            // ResourceIds takes up to 50 ids per call.
            (
                "Application Auto Scaling",
                "DescribeScalableTargets",
                batches(n, 50),
                "50 resource ids per call",
            ),
            // A policy needs a scalable target: only autoscaled services need reading, and
            // PolicyNames (names are derived from the service) takes up to 50 per call.
            (
                "Application Auto Scaling",
                "DescribeScalingPolicies",
                batches(auto, 50),
                "only with a target; 50 names per call",
            ),
            // ECS needs full ARNs; a name's ARN ends in a random suffix, so each distinct name
            // is described once (no value read). Stable: a cache across plans could keep them.
            (
                "Secrets Manager",
                "DescribeSecret",
                secrets as f64,
                "one per distinct secret name",
            ),
        ]
    };
    match kind {
        Kind::MicroService => {
            let lb = c.behind_alb;
            let mut f = ecs();
            f.extend([
                // By LoadBalancerArn: every target group of the stack's ALB, 400 per page.
                (
                    "Elastic Load Balancing v2",
                    "DescribeTargetGroups",
                    batches(lb, 400),
                    "all of the ALB's, 400 per page",
                ),
                // The ALB's DNS name is already an output of _stack/alb, read once per stack.
                (
                    "Elastic Load Balancing v2",
                    "DescribeLoadBalancers",
                    0.0,
                    "dnsName is a _stack/alb output",
                ),
                // The listener ARN is already an output of _stack/alb.
                (
                    "Elastic Load Balancing v2",
                    "DescribeListeners",
                    0.0,
                    "listenerArn is a _stack/alb output",
                ),
                // One listener holds every service's rule: 400 rules per page, read once.
                (
                    "Elastic Load Balancing v2",
                    "DescribeRules",
                    batches(lb, 400),
                    "one listener, 400 rules per page",
                ),
            ]);
            f
        }
        Kind::Worker => ecs(),
        Kind::Sqs => vec![
            // State records url (and dlqUrl); a deleted queue answers GetQueueAttributes with
            // QueueDoesNotExist, so a lookup by name is needed only without a record.
            (
                "SQS",
                "GetQueueUrl",
                0.0,
                "url and dlqUrl are recorded in state",
            ),
            // No batch read in SQS; All attributes come in one call, and the main queue's
            // RedrivePolicy carries the DLQ's ARN, so the DLQ needs no read of its own.
            (
                "SQS",
                "GetQueueAttributes",
                n as f64,
                "no batch form; DLQ ARN is in RedrivePolicy",
            ),
            // Tags are compared; no batch form.
            ("SQS", "ListQueueTags", n as f64, "no batch form"),
        ],
        Kind::DynamoDb => vec![
            // Each compared field lives in exactly one of these; none has a batch form.
            ("DynamoDB", "DescribeTable", n as f64, "no batch form"),
            ("DynamoDB", "ListTagsOfResource", n as f64, "no batch form"),
            ("DynamoDB", "DescribeTimeToLive", n as f64, "no batch form"),
            (
                "DynamoDB",
                "DescribeContinuousBackups",
                n as f64,
                "no batch form",
            ),
        ],
        Kind::S3 => vec![
            // GetBucketTagging answers 404 NoSuchBucket for a missing bucket and 403 for one in
            // another account, exactly what the HeadBucket probe distinguishes.
            (
                "S3",
                "HeadBucket",
                0.0,
                "GetBucketTagging answers 404/403 the same",
            ),
            // Every bucket setting is its own sub-resource; S3 has no batch read.
            (
                "S3",
                "GetBucketTagging",
                n as f64,
                "one sub-resource per call",
            ),
            (
                "S3",
                "GetBucketVersioning",
                n as f64,
                "one sub-resource per call",
            ),
            (
                "S3",
                "GetBucketEncryption",
                n as f64,
                "one sub-resource per call",
            ),
            (
                "S3",
                "GetPublicAccessBlock",
                n as f64,
                "one sub-resource per call",
            ),
            (
                "S3",
                "GetBucketLifecycleConfiguration",
                n as f64,
                "one sub-resource per call",
            ),
        ],
        Kind::Rds => vec![
            // A db-instance-id filter takes a list of identifiers; 100 records per page.
            (
                "RDS",
                "DescribeDBInstances",
                batches(n, 100),
                "id filter takes a list, 100 per page",
            ),
            // DBInstance.TagList comes with DescribeDBInstances.
            (
                "RDS",
                "ListTagsForResource",
                0.0,
                "TagList is inline in DescribeDBInstances",
            ),
        ],
        Kind::ElastiCacheRedis => vec![
            // Without an id it lists the region's groups, 100 per page: the floor holds when
            // the region holds mostly this stack's groups.
            (
                "ElastiCache",
                "DescribeReplicationGroups",
                batches(n, 100),
                "unfiltered list, 100 per page",
            ),
            // One ARN per call, and a replication group carries no tags inline.
            (
                "ElastiCache",
                "ListTagsForResource",
                n as f64,
                "one ARN per call, no inline tags",
            ),
            // The engine version lives on member clusters; listing them all pages at 100.
            (
                "ElastiCache",
                "DescribeCacheClusters",
                batches(c.cache_members, 100),
                "unfiltered list, 100 per page",
            ),
        ],
        _ => Vec::new(),
    }
}

/// The stack-wide resources' floor: read once per stack, whatever its size.
fn shared_floors() -> Vec<Floor> {
    vec![
        // The default VPC's id is needed to filter its subnets and its default security group.
        (
            "EC2",
            "DescribeVpcs",
            1.0,
            "default VPC id filters the next two",
        ),
        ("EC2", "DescribeSubnets", 1.0, "one filtered call"),
        ("EC2", "DescribeSecurityGroups", 1.0, "one filtered call"),
        // One cluster, tags inline (include=TAGS).
        ("ECS", "DescribeClusters", 1.0, "tags inline"),
        // The ALB, its tags (no inline form) and its listener: one call each.
        (
            "Elastic Load Balancing v2",
            "DescribeLoadBalancers",
            1.0,
            "one ALB",
        ),
        (
            "Elastic Load Balancing v2",
            "DescribeTags",
            1.0,
            "no inline tags",
        ),
        (
            "Elastic Load Balancing v2",
            "DescribeListeners",
            1.0,
            "one ALB",
        ),
        // The execution role: the role with its tags, its managed and its inline policy.
        ("IAM", "GetRole", 1.0, "tags inline"),
        ("IAM", "ListAttachedRolePolicies", 1.0, "managed policies"),
        ("IAM", "GetRolePolicy", 1.0, "the secrets policy"),
    ]
}

// -------------------------------------------------------------------------------------------
// The table
// -------------------------------------------------------------------------------------------

fn ratio(observed: f64, floor: f64) -> String {
    if floor > 0.0 {
        format!("{:.1}x", observed / floor)
    } else if observed > 0.0 {
        "(skip)".into()
    } else {
        "-".into()
    }
}

/// Lines for one group of operations: observed calls against floors, per component.
fn section(out: &mut String, calls: &Calls, floors: &[Floor], per: f64) -> (f64, f64) {
    let mut rows: BTreeMap<(String, String), (f64, f64, &str)> = BTreeMap::new();
    for ((svc, op), n) in calls {
        rows.entry((svc.clone(), op.clone()))
            .or_insert((0.0, 0.0, ""))
            .0 = *n as f64;
    }
    for (svc, op, f, why) in floors {
        let r = rows
            .entry((svc.to_string(), op.to_string()))
            .or_insert((0.0, 0.0, ""));
        r.1 = *f;
        r.2 = why;
    }
    let (mut total, mut floor) = (0.0, 0.0);
    for ((svc, op), (n, f, why)) in &rows {
        let why = if why.is_empty() { "not needed" } else { why };
        let _ = writeln!(
            out,
            "    {:<52} {:>9.2} {:>9.2} {:>7}   {why}",
            format!("{svc} {op}"),
            n / per,
            f / per,
            ratio(*n, *f)
        );
        total += n;
        floor += f;
    }
    (total, floor)
}

fn table(
    census: &Census,
    by_kind: &BTreeMap<&'static str, Calls>,
    shared: &Calls,
    prepare: &Calls,
    warm: &Calls,
) -> String {
    let mut out = String::new();
    let mut summary = Vec::new();
    let (mut all, mut all_floor, mut comps) = (0.0, 0.0, 0usize);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  calls per component by kind and operation (cold: fresh drivers; floor: fewest the APIs allow)"
    );
    let _ = writeln!(
        out,
        "    {:<52} {:>9} {:>9} {:>7}   why the floor",
        "operation", "calls/c", "floor/c", "ratio"
    );
    let empty = Calls::new();
    for kind in KINDS {
        let n = census.n(kind);
        if n == 0 {
            continue;
        }
        let mut extra = String::new();
        if kind == Kind::MicroService {
            extra = format!(", {} behind the ALB", census.behind_alb);
        }
        if let Some(a) = census.autoscaled.get(kind.name()) {
            let _ = write!(extra, ", {a} autoscaled");
        }
        if kind == Kind::ElastiCacheRedis {
            extra = format!(", {} member clusters", census.cache_members);
        }
        let _ = writeln!(out, "  {kind}: {n} components{extra}");
        let calls = by_kind.get(kind.name()).unwrap_or(&empty);
        let (total, floor) = section(&mut out, calls, &floors(kind, census), n as f64);
        let _ = writeln!(
            out,
            "    {:<52} {:>9.2} {:>9.2} {:>7}",
            "all",
            total / n as f64,
            floor / n as f64,
            ratio(total, floor)
        );
        summary.push((kind.name().to_string(), n, total, floor));
        all += total;
        all_floor += floor;
        comps += n;
    }
    let _ = writeln!(
        out,
        "  stack-wide resources (_stack/network, cluster, alb, execution-role): once per stack"
    );
    let (s_total, s_floor) = section(&mut out, shared, &shared_floors(), 1.0);
    let _ = writeln!(
        out,
        "    {:<52} {:>9.2} {:>9.2} {:>7}",
        "all",
        s_total,
        s_floor,
        ratio(s_total, s_floor)
    );

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<18} {:>6} {:>7} {:>11} {:>11} {:>7}",
        "kind", "comps", "calls", "calls/comp", "floor/comp", "ratio"
    );
    for (kind, n, total, floor) in &summary {
        let _ = writeln!(
            out,
            "  {kind:<18} {n:>6} {total:>7.0} {:>11.2} {:>11.2} {:>7}",
            total / *n as f64,
            floor / *n as f64,
            ratio(*total, *floor)
        );
    }
    let _ = writeln!(
        out,
        "  {:<18} {:>6} {s_total:>7.0} {:>11} {:>11} {:>7}",
        "shared (stack)",
        "-",
        "-",
        "-",
        ratio(s_total, s_floor)
    );
    let total = all + s_total;
    let floor = all_floor + s_floor;
    let _ = writeln!(
        out,
        "  {:<18} {comps:>6} {total:>7.0} {:>11.2} {:>11.2} {:>7}",
        "total",
        total / comps as f64,
        floor / comps as f64,
        ratio(total, floor)
    );

    let prepared: u64 = prepare.values().sum();
    let attributed = total as u64;
    let _ = writeln!(out);
    if prepared == attributed {
        let _ = writeln!(
            out,
            "  attribution check: Engine::prepare made {prepared} calls, the per-kind observes {attributed}"
        );
    } else {
        let _ = writeln!(
            out,
            "  warning: Engine::prepare made {prepared} calls but the per-kind observes {attributed}; by operation (prepare vs per-kind):"
        );
        let mut summed = Calls::new();
        for calls in by_kind.values().chain([shared]) {
            for (k, n) in calls {
                *summed.entry(k.clone()).or_default() += n;
            }
        }
        let keys: std::collections::BTreeSet<_> = prepare.keys().chain(summed.keys()).collect();
        for k in keys {
            let (a, b) = (
                prepare.get(k).copied().unwrap_or(0),
                summed.get(k).copied().unwrap_or(0),
            );
            if a != b {
                let _ = writeln!(out, "    {} {}: {a} vs {b}", k.0, k.1);
            }
        }
    }
    let warm_total: u64 = warm.values().sum();
    let _ = writeln!(
        out,
        "  warm prepare (same engine again): {warm_total} calls, {:.2} per component; cold: {prepared}",
        warm_total as f64 / comps as f64
    );
    for (k, n) in prepare {
        let w = warm.get(k).copied().unwrap_or(0);
        if w != *n {
            let _ = writeln!(out, "    {} {}: cold {n}, warm {w}", k.0, k.1);
        }
    }
    out
}
