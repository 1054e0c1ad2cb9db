//! Benchmark (not a test): how long source → load → resolve → graph takes for a large stack.
//!
//! Generates a stack of 1,000 services × 5 components (~9,000 files) into a temporary directory,
//! then times each stage over several iterations and prints the median and the fastest run.
//! The target is ≤ 1 s in total for a release build; it is reported, never asserted.
//!
//! Run with `cargo bench -p panka-controller --bench load`. Set `PANKA_BENCH_SERVICES` and
//! `PANKA_BENCH_ITERATIONS` to change the size and the number of runs.

use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use panka_controller::source;
use panka_core::diag::Diagnostic;
use panka_core::{graph, load, resolve};

const STACK: &str = "bench-platform";
const ENVIRONMENT: &str = "production";
const TARGET: Duration = Duration::from_millis(1000);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn run() -> Result<ExitCode, Box<dyn Error>> {
    let services = env_number("PANKA_BENCH_SERVICES", 1000);
    let iterations = env_number("PANKA_BENCH_ITERATIONS", 5);

    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let files = generate(dir.path(), services)?;
    println!(
        "generated {files} files ({services} services × 5 components) in {} ms",
        started.elapsed().as_millis()
    );

    // One checked run first: a generator that writes something invalid must be noticed, not
    // timed.
    match check(dir.path()) {
        Ok((components, edges, waves)) => println!(
            "stack `{STACK}` resolves for `{ENVIRONMENT}`: {components} components, {edges} edges, \
             {waves} waves"
        ),
        Err(problems) => {
            eprintln!("the generated stack does not validate; first problems:");
            for d in problems.iter().take(10) {
                eprintln!("  {d}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }

    let mut runs: Vec<[Duration; 4]> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        let tree = source::dir::read_stack(dir.path(), STACK).map_err(|d| d.to_string())?;
        let t1 = Instant::now();
        let loaded = load::load(STACK, &tree).map_err(|d| d.to_string())?;
        let t2 = Instant::now();
        let desired = resolve::resolve(&loaded, ENVIRONMENT, &resolve::Options::default())
            .map_err(|d| d.to_string())?;
        let t3 = Instant::now();
        let graph = graph::build(&desired).map_err(|d| d.to_string())?;
        let t4 = Instant::now();
        black_box((&tree, &loaded, &desired, &graph));
        runs.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
    }

    print!("{}", report(&runs, files));
    Ok(ExitCode::SUCCESS)
}

/// Runs every stage once; returns the component, edge and wave counts, or the problems found.
fn check(root: &Path) -> Result<(usize, usize, usize), Vec<Diagnostic>> {
    let tree =
        source::dir::read_stack(root, STACK).map_err(|d| d.into_iter().collect::<Vec<_>>())?;
    let loaded = load::load(STACK, &tree).map_err(|d| d.into_iter().collect::<Vec<_>>())?;
    let desired = resolve::resolve(&loaded, ENVIRONMENT, &resolve::Options::default())
        .map_err(|d| d.into_iter().collect::<Vec<_>>())?;
    let graph = graph::build(&desired).map_err(|d| vec![d])?;
    Ok((
        desired.components.len(),
        graph.edges.len(),
        graph.waves.len(),
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

fn report(runs: &[[Duration; 4]], files: usize) -> String {
    let names = [
        "source::dir::read_stack (I/O)",
        "load::load",
        "resolve::resolve",
        "graph::build",
    ];
    let mut out = String::new();
    let build = if cfg!(debug_assertions) {
        "debug build: figures are not meaningful, use `cargo bench`"
    } else {
        "release build"
    };
    let _ = writeln!(out, "\n{} iterations, {build}", runs.len());
    let _ = writeln!(out, "{:<32} {:>12} {:>12}", "stage", "median ms", "min ms");
    for (i, name) in names.iter().enumerate() {
        let stage: Vec<Duration> = runs.iter().map(|r| r[i]).collect();
        let min = stage.iter().min().copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{name:<32} {:>12.1} {:>12.1}",
            ms(median(stage)),
            ms(min)
        );
    }
    let totals: Vec<Duration> = runs.iter().map(|r| r.iter().sum()).collect();
    let total_min = totals.iter().min().copied().unwrap_or_default();
    let total = median(totals);
    let _ = writeln!(
        out,
        "{:<32} {:>12.1} {:>12.1}",
        "total",
        ms(total),
        ms(total_min)
    );
    let per_sec = files as f64 / total.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(out, "\nfiles: {files}, {per_sec:.0} files/s (median run)");
    let verdict = if total <= TARGET { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "target ≤ {} ms: {verdict} (median {:.1} ms)",
        TARGET.as_millis(),
        ms(total)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

struct Writer<'a> {
    stack_dir: &'a Path,
    files: usize,
}

impl Writer<'_> {
    fn write(&mut self, rel: &str, text: &str) -> std::io::Result<()> {
        let path = self.stack_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
        self.files += 1;
        Ok(())
    }
}

fn svc_name(i: usize) -> String {
    format!("svc-{i:04}")
}

/// Writes the stack; returns how many files it holds.
fn generate(root: &Path, services: usize) -> std::io::Result<usize> {
    let stack_dir = root.join("stacks").join(STACK);
    let mut w = Writer {
        stack_dir: &stack_dir,
        files: 0,
    };
    w.write(
        "stack.yaml",
        &format!(
            "apiVersion: core.panka.io/v1\nkind: Stack\n\nmetadata:\n  name: {STACK}\n  \
             description: \"Generated for the load benchmark\"\n  labels:\n    team: platform\n\n\
             spec:\n  provider:\n    name: aws\n    region: us-east-1\n"
        ),
    )?;
    w.write(
        "infra/defaults.yaml",
        &format!(
            "apiVersion: infra.panka.io/v1\nkind: StackInfra\n\nmetadata:\n  name: defaults\n  \
             stack: {STACK}\n\nspec:\n  cluster: {STACK}-${{ENVIRONMENT}}\n  networking:\n    \
             vpc: default\n    assignPublicIp: false\n  logging:\n    retentionDays: 14\n  \
             drift:\n    mode: remediate\n    interval: 5m\n  approval:\n    environments: \
             [production]\n  defaults:\n    resources:\n      cpu: 256\n      memory: 512\n    \
             scaling:\n      replicas: 1\n  tags:\n    cost-center: \"1234\"\n"
        ),
    )?;
    for (env, version) in [("development", "v1.3.0-rc.1"), ("production", "v1.2.0")] {
        w.write(
            &format!("environments/{env}/variables.yaml"),
            &format!(
                "apiVersion: core.panka.io/v1\nkind: Variables\n\nmetadata:\n  name: {env}\n  \
                 stack: {STACK}\n  environment: {env}\n\nspec:\n  VERSION: {version}\n  \
                 LOG_LEVEL: info\n"
            ),
        )?;
    }
    for i in 0..services {
        service(&mut w, i, services)?;
    }
    Ok(w.files)
}

fn header(kind: &str, api: &str, name: &str, svc: &str, env: Option<&str>) -> String {
    let mut s = format!(
        "apiVersion: {api}\nkind: {kind}\n\nmetadata:\n  name: {name}\n  service: {svc}\n  \
         stack: {STACK}\n"
    );
    if let Some(env) = env {
        let _ = writeln!(s, "  environment: {env}");
    }
    s.push('\n');
    s
}

/// One service: api (MicroService + infra.yaml + configs/app.yaml), worker (Worker), queue
/// (SQS), a store (RDS or DynamoDB) and a bucket (S3, or ElastiCacheRedis every fourth service).
fn service(w: &mut Writer<'_>, i: usize, services: usize) -> std::io::Result<()> {
    let svc = svc_name(i);
    let base = format!("services/{svc}");
    let with_defaults = i.is_multiple_of(4);
    let mut doc = format!(
        "apiVersion: core.panka.io/v1\nkind: Service\n\nmetadata:\n  name: {svc}\n  stack: \
         {STACK}\n  description: \"Generated service {i}\"\n  labels:\n    team: team-{}\n\n",
        i % 25
    );
    if with_defaults {
        doc.push_str("spec:\n  infrastructure:\n    defaults: ./infra/defaults.yaml\n");
        w.write(
            &format!("{base}/infra/defaults.yaml"),
            &format!(
                "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\n\nmetadata:\n  name: \
                 defaults\n  service: {svc}\n  stack: {STACK}\n\nspec:\n  resources:\n    \
                 cpu: 512\n    memory: 1024\n  scaling:\n    replicas: 2\n"
            ),
        )?;
    } else {
        doc.push_str("spec: {}\n");
    }
    w.write(&format!("{base}/service.yaml"), &doc)?;

    let rds = i.is_multiple_of(2);
    let (store, store_file, store_output) = if rds {
        ("database", "rds.yaml", "endpoint")
    } else {
        ("table", "dynamodb.yaml", "name")
    };
    let redis = i % 4 == 3;
    let (bucket, bucket_file, bucket_output) = if redis {
        ("cache", "elasticache.yaml", "endpoint")
    } else {
        ("files", "s3.yaml", "name")
    };
    let comp = |c: &str, f: &str| format!("{base}/components/{c}/{f}");

    // api: MicroService.
    let mut api = header("MicroService", "components.panka.io/v1", "api", &svc, None);
    let _ = write!(
        api,
        "spec:\n  image:\n    repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{svc}-api\n    \
         tag: \"${{VERSION}}\"\n  runtime:\n    platform: fargate\n    architecture: arm64\n  \
         container:\n    command: [\"/app/server\"]\n    args:\n      - \"--config=/config/app.yaml\"\n  \
         ports:\n    - name: http\n      port: 8080\n  environment:\n    - name: SERVICE_NAME\n      \
         value: \"${{SERVICE}}\"\n    - name: LOG_LEVEL\n      value: \"${{LOG_LEVEL}}\"\n    \
         - name: STORE_ADDRESS\n      valueFrom:\n        component: {svc}/{store}\n        \
         output: {store_output}\n    - name: QUEUE_URL\n      valueFrom:\n        component: queue\n        \
         output: url\n"
    );
    // Every service but the first of each group of ten calls that first service's api.
    let hub = i - i % 10;
    if hub != i {
        let _ = write!(
            api,
            "    - name: UPSTREAM_URL\n      valueFrom:\n        component: {}/api\n        \
             output: url\n",
            svc_name(hub)
        );
    }
    if rds {
        let _ = write!(
            api,
            "  secrets:\n    - name: DB_PASSWORD\n      secretRef: /stacks/{STACK}/{svc}/db-password\n      \
             envVar: DATABASE_PASSWORD\n"
        );
    }
    let _ = write!(
        api,
        "  configs:\n    mountPath: /config\n    files:\n      - app.yaml\n  healthCheck:\n    \
         readiness:\n      http:\n        path: /health/ready\n        port: 8080\n      \
         periodSeconds: 10\n    liveness:\n      http:\n        path: /health/live\n        \
         port: 8080\n  dependsOn:\n    - {svc}/{store}\n    - {svc}/queue\n"
    );
    w.write(&comp("api", "microservice.yaml"), &api)?;
    let mut infra = header("ComponentInfra", "infra.panka.io/v1", "api", &svc, None);
    infra.push_str(
        "spec:\n  resources:\n    cpu: 256\n    memory: 512\n  scaling:\n    replicas: 2\n    \
         autoscaling:\n      enabled: true\n      minReplicas: 2\n      maxReplicas: 10\n      \
         policies:\n        - type: targetTracking\n          metric: CPUUtilization\n          \
         targetValue: 70\n  networking:\n    loadBalancer:\n      enabled: true\n      \
         type: application\n",
    );
    w.write(&comp("api", "infra.yaml"), &infra)?;
    w.write(
        &comp("api", "configs/app.yaml"),
        &format!(
            "app:\n  name: {svc}-api\n  environment: ${{ENVIRONMENT}}\n  service: ${{SERVICE}}\n\n\
             server:\n  host: 0.0.0.0\n  port: 8080\n  timeout: 30s\n\nfeatures:\n  \
             literal: \"$${{NOT_A_VARIABLE}}\"\n  retries: 3\n"
        ),
    )?;

    // worker: Worker, reading the queue and the bucket; every third one also drains the next
    // service's queue.
    let mut worker = header("Worker", "components.panka.io/v1", "worker", &svc, None);
    let _ = write!(
        worker,
        "spec:\n  image:\n    repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{svc}-worker\n    \
         tag: \"${{VERSION}}\"\n  container:\n    command: [\"/app/worker\"]\n  environment:\n    \
         - name: QUEUE_URL\n      valueFrom:\n        component: {svc}/queue\n        output: url\n    \
         - name: BUCKET\n      valueFrom:\n        component: {svc}/{bucket}\n        \
         output: {bucket_output}\n  healthCheck:\n    liveness:\n      command: [\"/app/worker\", \
         \"--health\"]\n      periodSeconds: 30\n  dependsOn:\n    - {svc}/queue\n"
    );
    if i.is_multiple_of(3) {
        let _ = writeln!(worker, "    - {}/queue", svc_name((i + 1) % services));
    }
    w.write(&comp("worker", "worker.yaml"), &worker)?;
    if i % 2 == 1 {
        let mut infra = header("ComponentInfra", "infra.panka.io/v1", "worker", &svc, None);
        infra.push_str(
            "spec:\n  resources:\n    cpu: 512\n    memory: 2048\n  scaling:\n    replicas: 1\n",
        );
        w.write(&comp("worker", "infra.yaml"), &infra)?;
    }

    // queue: SQS with a dead-letter queue.
    let mut queue = header("SQS", "components.panka.io/v1", "queue", &svc, None);
    queue.push_str(
        "spec:\n  type: standard\n  messageRetentionPeriod: 345600\n  visibilityTimeout: 300\n  \
         receiveWaitTimeSeconds: 20\n  deadLetterQueue:\n    enabled: true\n    maxReceiveCount: 3\n",
    );
    w.write(&comp("queue", "sqs.yaml"), &queue)?;

    // store: RDS or DynamoDB.
    if rds {
        let mut db = header("RDS", "components.panka.io/v1", store, &svc, None);
        let _ = write!(
            db,
            "spec:\n  engine:\n    type: postgres\n    version: \"15.4\"\n  instance:\n    \
             class: db.t3.small\n    storage:\n      type: gp3\n      allocatedGB: 20\n      \
             maxAllocatedGB: 100\n  database:\n    name: db{i}\n    username: dbadmin\n    \
             passwordSecret:\n      ref: /stacks/{STACK}/{svc}/db-password\n  backup:\n    \
             retentionDays: 7\n    window: \"03:00-04:00\"\n"
        );
        w.write(&comp(store, store_file), &db)?;
    } else {
        let mut table = header("DynamoDB", "components.panka.io/v1", store, &svc, None);
        table.push_str(
            "spec:\n  billingMode: PAY_PER_REQUEST\n  keys:\n    partition:\n      name: id\n      \
             type: S\n    sort:\n      name: createdAt\n      type: N\n  ttl:\n    attribute: \
             expiresAt\n  pointInTimeRecovery: true\n  stream:\n    viewType: NEW_AND_OLD_IMAGES\n",
        );
        w.write(&comp(store, store_file), &table)?;
    }

    // bucket: S3 or ElastiCacheRedis.
    if redis {
        let mut cache = header(
            "ElastiCacheRedis",
            "components.panka.io/v1",
            bucket,
            &svc,
            None,
        );
        cache.push_str(
            "spec:\n  engine:\n    version: \"7.0\"\n  cluster:\n    mode: replication-group\n    \
             nodeType: cache.t3.medium\n    numNodes: 2\n  security:\n    atRestEncryption: true\n    \
             transitEncryption: true\n",
        );
        w.write(&comp(bucket, bucket_file), &cache)?;
    } else {
        let mut s3 = header("S3", "components.panka.io/v1", bucket, &svc, None);
        s3.push_str(
            "spec:\n  versioning: true\n  encryption:\n    type: AES256\n  publicAccess: blocked\n  \
             lifecycle:\n    noncurrentVersionExpirationDays: 90\n",
        );
        w.write(&comp(bucket, bucket_file), &s3)?;
    }

    // Production overlays: bigger api tasks for every fifth service, a longer visibility
    // timeout for every seventh queue, a replaced config file for every tenth api.
    let over = |c: &str, f: &str| format!("environments/production/{base}/components/{c}/{f}");
    if i.is_multiple_of(5) {
        let mut o = header(
            "ComponentInfra",
            "infra.panka.io/v1",
            "api",
            &svc,
            Some("production"),
        );
        o.push_str(
            "spec:\n  resources:\n    cpu: 1024\n    memory: 2048\n  scaling:\n    \
             autoscaling:\n      minReplicas: 4\n      maxReplicas: 40\n",
        );
        w.write(&over("api", "infra.yaml"), &o)?;
    }
    if i.is_multiple_of(7) {
        let mut o = header(
            "SQS",
            "components.panka.io/v1",
            "queue",
            &svc,
            Some("production"),
        );
        o.push_str("spec:\n  visibilityTimeout: 600\n");
        w.write(&over("queue", "sqs.yaml"), &o)?;
    }
    if i.is_multiple_of(10) {
        w.write(
            &over("api", "configs/app.yaml"),
            &format!(
                "app:\n  name: {svc}-api\n  environment: ${{ENVIRONMENT}}\n\nserver:\n  port: 8080\n  \
                 timeout: 10s\n"
            ),
        )?;
    }
    Ok(())
}
