//! Changes a person makes in the AWS console, made with the SDK straight to the emulator: the
//! drift tests' way of changing AWS behind panka's back; and what AWS itself would produce for a
//! running service (log lines, metrics, registered targets, tasks), which the emulator does not.
//! Each panics when the emulator refuses.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::PointInTimeRecoverySpecification;
use aws_sdk_ecs::types::KeyValuePair;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;

/// Sets a service's task count.
pub async fn scale(sdk: &SdkConfig, cluster: &str, service: &str, count: i32) {
    aws_sdk_ecs::Client::new(sdk)
        .update_service()
        .cluster(cluster)
        .service(service)
        .desired_count(count)
        .send()
        .await
        .expect("service scaled");
}

/// A service's task count.
pub async fn desired_count(sdk: &SdkConfig, cluster: &str, service: &str) -> i32 {
    running_service(sdk, cluster, service).await.desired_count()
}

async fn running_service(
    sdk: &SdkConfig,
    cluster: &str,
    service: &str,
) -> aws_sdk_ecs::types::Service {
    aws_sdk_ecs::Client::new(sdk)
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .expect("services described")
        .services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .cloned()
        .unwrap_or_else(|| panic!("no active service {service} in {cluster}"))
}

/// The task definition a service runs.
async fn running_task_definition(
    sdk: &SdkConfig,
    cluster: &str,
    service: &str,
) -> aws_sdk_ecs::types::TaskDefinition {
    let svc = running_service(sdk, cluster, service).await;
    aws_sdk_ecs::Client::new(sdk)
        .describe_task_definition()
        .task_definition(svc.task_definition().expect("a task definition"))
        .send()
        .await
        .expect("task definition described")
        .task_definition
        .expect("a task definition")
}

/// Registers a new revision of a service's task definition with `image` and the plain variable
/// `name` set to `value`, and points the service at it.
pub async fn swap_task_definition(
    sdk: &SdkConfig,
    cluster: &str,
    service: &str,
    image: &str,
    (name, value): (&str, &str),
) {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let td = running_task_definition(sdk, cluster, service).await;
    let mut containers = td.container_definitions().to_vec();
    let first = containers.first_mut().expect("a container");
    first.image = Some(image.to_owned());
    let mut env: Vec<KeyValuePair> = first
        .environment()
        .iter()
        .filter(|e| e.name() != Some(name))
        .cloned()
        .collect();
    env.push(KeyValuePair::builder().name(name).value(value).build());
    first.environment = Some(env);
    let registered = ecs
        .register_task_definition()
        .family(td.family().expect("a family"))
        .set_container_definitions(Some(containers))
        .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
        .set_network_mode(td.network_mode().cloned())
        .set_cpu(td.cpu().map(str::to_owned))
        .set_memory(td.memory().map(str::to_owned))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_owned))
        .send()
        .await
        .expect("task definition registered");
    let arn = registered
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("an arn");
    ecs.update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(arn)
        .send()
        .await
        .expect("service updated");
}

/// The image of a service's running task definition.
pub async fn image(sdk: &SdkConfig, cluster: &str, service: &str) -> String {
    running_task_definition(sdk, cluster, service)
        .await
        .container_definitions()
        .first()
        .and_then(|c| c.image())
        .expect("an image")
        .to_owned()
}

/// Suspends a bucket's versioning and removes its public access block.
pub async fn open_bucket(sdk: &SdkConfig, bucket: &str) {
    let s3 = aws_sdk_s3::Client::new(sdk);
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .expect("versioning suspended");
    s3.delete_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .expect("public access block removed");
}

/// A queue's URL; `None` when the queue does not exist.
async fn queue_url(sqs: &aws_sdk_sqs::Client, queue: &str) -> Option<String> {
    sqs.get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .ok()?
        .queue_url
}

/// Sets a queue's visibility timeout.
pub async fn set_visibility_timeout(sdk: &SdkConfig, queue: &str, seconds: u32) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = queue_url(&sqs, queue).await.expect("queue found");
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
        .send()
        .await
        .expect("attributes set");
}

/// A queue's visibility timeout; `None` when the queue does not exist.
pub async fn visibility_timeout(sdk: &SdkConfig, queue: &str) -> Option<u32> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = queue_url(&sqs, queue).await?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .expect("attributes read");
    attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok())
}

/// Turns a table's point-in-time recovery off.
pub async fn disable_pitr(sdk: &SdkConfig, table: &str) {
    aws_sdk_dynamodb::Client::new(sdk)
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(false)
                .build()
                .expect("a specification"),
        )
        .send()
        .await
        .expect("PITR off");
}

/// Sets a DB instance's backup retention, at once.
pub async fn set_backup_retention(sdk: &SdkConfig, instance: &str, days: i32) {
    aws_sdk_rds::Client::new(sdk)
        .modify_db_instance()
        .db_instance_identifier(instance)
        .backup_retention_period(days)
        .apply_immediately(true)
        .send()
        .await
        .expect("instance modified");
}

/// Deletes a DB instance without a final snapshot.
pub async fn delete_db(sdk: &SdkConfig, instance: &str) {
    aws_sdk_rds::Client::new(sdk)
        .delete_db_instance()
        .db_instance_identifier(instance)
        .skip_final_snapshot(true)
        .send()
        .await
        .expect("instance deleted");
}

/// Publishes what a load balancer reports for one target group for the minute of `at`:
/// `requests` requests, `errors` of them 5XX, each taking `seconds`.
pub async fn feed_load_balancer_metrics(
    sdk: &SdkConfig,
    (target_group, load_balancer): (&str, &str),
    at: std::time::SystemTime,
    (requests, errors, seconds): (u32, u32, f64),
) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let dimensions = [
        ("TargetGroup", target_group),
        ("LoadBalancer", load_balancer),
    ]
    .map(|(n, v)| Dimension::builder().name(n).value(v).build());
    let datum = |name: &str, value: f64| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(dimensions.to_vec()))
            .value(value)
            .timestamp(at.into())
            .build()
    };
    let mut data = vec![
        datum("RequestCount", f64::from(requests)),
        datum("HTTPCode_Target_5XX_Count", f64::from(errors)),
    ];
    data.extend((0..requests.min(100)).map(|_| datum("TargetResponseTime", seconds)));
    aws_sdk_cloudwatch::Client::new(sdk)
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("metrics published");
}

/// The value of plain variable `name` in a service's running task definition, if it is set.
pub async fn variable(sdk: &SdkConfig, cluster: &str, service: &str, name: &str) -> Option<String> {
    running_task_definition(sdk, cluster, service)
        .await
        .container_definitions()
        .first()
        .and_then(|c| c.environment().iter().find(|e| e.name() == Some(name)))
        .and_then(|e| e.value())
        .map(str::to_owned)
}

/// Lines logged by one task, as its awslogs driver sends them: PutLogEvents on `stream` of
/// `group` (created when absent), `(ms since the epoch, message)` in order, 5 000 a call.
pub async fn log_lines(sdk: &SdkConfig, group: &str, stream: &str, lines: &[(i64, String)]) {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    match logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
        Err(e) => panic!("cannot create log stream {stream}: {e:?}"),
    }
    for chunk in lines.chunks(5_000) {
        let events = chunk
            .iter()
            .map(|(at, message)| {
                InputLogEvent::builder()
                    .timestamp(*at)
                    .message(message)
                    .build()
                    .expect("an event")
            })
            .collect();
        logs.put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .expect("log events put");
    }
}

/// Publishes datapoints of `namespace` with `dimensions`, each `(metric, value)` one datum at
/// `at`, as AWS's services publish theirs.
pub async fn publish_metrics(
    sdk: &SdkConfig,
    namespace: &str,
    dimensions: &[(&str, &str)],
    at: std::time::SystemTime,
    data: &[(&str, f64)],
) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let dimensions: Vec<Dimension> = dimensions
        .iter()
        .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
        .collect();
    let data = data
        .iter()
        .map(|(name, value)| {
            MetricDatum::builder()
                .metric_name(*name)
                .set_dimensions(Some(dimensions.clone()))
                .value(*value)
                .timestamp(at.into())
                .build()
        })
        .collect();
    aws_sdk_cloudwatch::Client::new(sdk)
        .put_metric_data()
        .namespace(namespace)
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("metrics published");
}

/// Registers `ip:port` targets with a target group, as ECS does for a service's tasks.
pub async fn register_targets(sdk: &SdkConfig, target_group: &str, targets: &[(&str, i32)]) {
    use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
    let targets = targets
        .iter()
        .map(|(ip, port)| TargetDescription::builder().id(*ip).port(*port).build())
        .collect();
    aws_sdk_elasticloadbalancingv2::Client::new(sdk)
        .register_targets()
        .target_group_arn(target_group)
        .set_targets(Some(targets))
        .send()
        .await
        .expect("targets registered");
}

/// Starts a task of an ECS service's task definition in the service's group (`service:{name}`),
/// as the service's scheduler does; the task's id.
pub async fn start_service_task(sdk: &SdkConfig, cluster: &str, service: &str) -> String {
    use aws_sdk_ecs::types::LaunchType;
    let svc = running_service(sdk, cluster, service).await;
    let out = aws_sdk_ecs::Client::new(sdk)
        .run_task()
        .cluster(cluster)
        .task_definition(svc.task_definition().expect("a task definition"))
        .launch_type(LaunchType::Fargate)
        .group(format!("service:{service}"))
        .set_network_configuration(svc.network_configuration().cloned())
        .send()
        .await
        .expect("task started");
    let arn = out
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .expect("a task ARN");
    arn.rsplit_once('/').map_or(arn, |(_, id)| id).to_owned()
}

/// Stops a task, saying why (as ECS does when its essential container exits).
pub async fn stop_task(sdk: &SdkConfig, cluster: &str, task: &str, reason: &str) {
    aws_sdk_ecs::Client::new(sdk)
        .stop_task()
        .cluster(cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
        .expect("task stopped");
}
