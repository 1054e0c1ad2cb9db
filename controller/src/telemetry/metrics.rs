//! A container component's metrics: every series [`series`] names, over one window read as one
//! period, in one `GetMetricData` call; what the datapoints say is [`summarize`]'s.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use panka_core::telemetry::metrics::{series, summarize, Metrics, Series, Window};

use super::{Deployed, Telemetry, TelemetryError};
use crate::driver::{counted_client, DriverError};

impl Telemetry {
    /// What CloudWatch measured of `deployed` over `window`: one `GetMetricData` call for the
    /// load balancer's series (when it serves behind it) and the ECS service's. One period covers
    /// the window, so each series has a datapoint or two, far below the call's page size: the
    /// answer has no next page.
    pub async fn metrics(
        &self,
        deployed: &Deployed,
        window: Window,
    ) -> Result<Metrics, TelemetryError> {
        let cloudwatch = counted_client!(self, aws_sdk_cloudwatch);
        let period = i32::try_from(window.period).unwrap_or(i32::MAX);
        let mut request = cloudwatch
            .get_metric_data()
            .start_time(DateTime::from_secs(window.start))
            .end_time(DateTime::from_secs(window.end));
        for s in series(&deployed.metrics) {
            request = request.metric_data_queries(query(&s, period));
        }
        let out = request
            .send()
            .await
            .map_err(|e| DriverError::aws("read the metrics of", &deployed.component, &e))?;
        let results = out.metric_data_results();
        let values = |id: &str| {
            results
                .iter()
                .find(|r| r.id() == Some(id))
                .map_or(&[][..], |r| r.values())
        };
        Ok(summarize(deployed.metrics.load_balancer.is_some(), values))
    }
}

fn query(s: &Series, period: i32) -> MetricDataQuery {
    let mut metric = Metric::builder()
        .namespace(s.namespace)
        .metric_name(s.metric);
    for (name, value) in &s.dimensions {
        metric = metric.dimensions(Dimension::builder().name(*name).value(value).build());
    }
    MetricDataQuery::builder()
        .id(s.id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric.build())
                .period(period)
                .stat(s.stat)
                .build(),
        )
        .return_data(true)
        .build()
}
