//! Lock round-trip benchmark: acquire + release through panka's DynamoDB lock backend against a
//! bare `PutItem` + `DeleteItem` pair on the same table, in the local emulator.
//!
//! Run: `cargo bench -p panka-tests --bench lock_roundtrip` (optionally `-- ROUNDS`).
//!
//! Prints, per pair, the HTTP requests sent (counted by an SDK interceptor) and the mean time,
//! and the ratio lock/bare. The design target is 1.0: one request to acquire and one to release,
//! like the bare pair. Against real DynamoDB the time is dominated by those round trips; against
//! the emulator (Python, one request at a time) evaluating condition and update expressions costs
//! extra CPU per request, so a conditional bare pair is printed as a second baseline.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use panka_controller::lock::dynamodb::DynamoDbLocks;
use panka_controller::lock::{LockBackend, LockRequest, LockTarget};
use panka_tests::emulator::emulator;

const DEFAULT_ROUNDS: u32 = 300;

/// Counts HTTP requests (attempts) sent by a client.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

#[derive(Debug, Clone)]
struct Counting(Arc<Counter>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0 .0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Measure {
    elapsed: Duration,
    requests: u64,
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u32>().ok())
        .unwrap_or(DEFAULT_ROUNDS);
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
    runtime.block_on(run(rounds));
}

async fn run(rounds: u32) {
    let env = emulator();
    let b = env.fresh_backends().await;
    let counter = Arc::new(Counter::default());
    let sdk = env.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(Counting(Arc::clone(&counter)))
            .build(),
    );
    let locks = DynamoDbLocks::new(client.clone(), b.table.clone());
    let stack = LockTarget::stack("bench", "prod").unwrap_or_else(|e| panic!("{e}"));
    let service = LockTarget::service("bench", "prod", "api").unwrap_or_else(|e| panic!("{e}"));

    // Warm up connections and the emulator's code paths.
    bare(&client, &b.table, 20, false, &counter).await;
    bare(&client, &b.table, 20, true, &counter).await;
    lock(&locks, &stack, 20, &counter).await;
    lock(&locks, &service, 20, &counter).await;

    let plain = bare(&client, &b.table, rounds, false, &counter).await;
    let conditional = bare(&client, &b.table, rounds, true, &counter).await;
    let stack_m = lock(&locks, &stack, rounds, &counter).await;
    let service_m = lock(&locks, &service, rounds, &counter).await;

    let ms = |m: &Measure| m.elapsed.as_secs_f64() * 1000.0 / f64::from(rounds);
    let req = |m: &Measure| m.requests as f64 / f64::from(rounds);
    let ratio = |m: &Measure, base: &Measure| m.elapsed.as_secs_f64() / base.elapsed.as_secs_f64();
    println!(
        "lock round trip against {} ({rounds} rounds each)",
        env.endpoint
    );
    println!(
        "  {:<44} {:>9} {:>11} {:>10} {:>12}",
        "", "req/pair", "ms/pair", "vs bare", "vs cond. bare"
    );
    let line = |name: &str, m: &Measure| {
        println!(
            "  {name:<44} {:>9.2} {:>11.3} {:>10.2} {:>12.2}",
            req(m),
            ms(m),
            ratio(m, &plain),
            ratio(m, &conditional)
        );
    };
    line("bare PutItem + DeleteItem", &plain);
    line("bare conditional PutItem + DeleteItem", &conditional);
    line("panka stack-scope acquire + release", &stack_m);
    line("panka service-scope acquire + release (tx)", &service_m);
    println!(
        "request ratio (panka / bare): stack {:.2}, service {:.2} (target 1.0)",
        req(&stack_m) / req(&plain),
        req(&service_m) / req(&plain)
    );
}

async fn bare(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    rounds: u32,
    conditional: bool,
    counter: &Counter,
) -> Measure {
    let before = counter.0.load(Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..rounds {
        let key = AttributeValue::S("bench:bare".into());
        let id = AttributeValue::S(i.to_string());
        let mut put = client
            .put_item()
            .table_name(table)
            .item("lockKey", key.clone())
            .item("lockId", id.clone());
        let mut delete = client.delete_item().table_name(table).key("lockKey", key);
        if conditional {
            put = put.condition_expression("attribute_not_exists(lockId)");
            delete = delete
                .condition_expression("lockId = :id")
                .expression_attribute_values(":id", id);
        }
        put.send()
            .await
            .unwrap_or_else(|e| panic!("put failed: {e}"));
        delete
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete failed: {e}"));
    }
    Measure {
        elapsed: start.elapsed(),
        requests: counter.0.load(Ordering::Relaxed) - before,
    }
}

async fn lock(
    locks: &dyn LockBackend,
    target: &LockTarget,
    rounds: u32,
    counter: &Counter,
) -> Measure {
    let request = LockRequest {
        target: target.clone(),
        holder: "bench@local".into(),
        operation: "bench".into(),
        lease: Duration::from_secs(120),
    };
    let before = counter.0.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..rounds {
        let info = locks
            .try_acquire(&request)
            .await
            .unwrap_or_else(|e| panic!("acquire failed: {e}"));
        let released = locks
            .release(target, &info.lock_id)
            .await
            .unwrap_or_else(|e| panic!("release failed: {e}"));
        assert!(released, "lost the lock during the benchmark");
    }
    Measure {
        elapsed: start.elapsed(),
        requests: counter.0.load(Ordering::Relaxed) - before,
    }
}
