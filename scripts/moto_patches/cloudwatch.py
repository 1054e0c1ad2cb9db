"""CloudWatch GetMetricData with percentile statistics (`p99`, `p99.9`), which moto 5.1.22 does not
compute: its `Statistics.get_statistics_for_type` knows Sum, Average, Minimum, Maximum and
SampleCount only and answers `None` for anything else, which the query serializer then cannot
write, so a request asking `p99` fails as a whole.

Real CloudWatch computes a percentile from the values published in the period. This patch does
the same for values published one by one (`Value`), with the nearest-rank method; values
published only as `StatisticValues` carry no distribution, so a period holding only those has no
percentile datapoint (dropped from the answer, where moto would fail the request). Every other
statistic is left to moto.
"""

import math
import re

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def apply() -> None:
    from moto.cloudwatch import models

    original = models.Statistics.get_statistics_for_type
    if getattr(original, "_panka_percentiles", False):
        return

    def get_statistics_for_type(self, stat):  # type: ignore[no-untyped-def]
        match = _PERCENTILE.match(stat or "")
        if not match:
            return original(self, stat)
        values = sorted(self.metric_single_values_list)
        if not values:
            return None
        rank = max(1, math.ceil(float(match.group(1)) / 100.0 * len(values)))
        return values[rank - 1]

    get_statistics_for_type._panka_percentiles = True  # type: ignore[attr-defined]
    models.Statistics.get_statistics_for_type = get_statistics_for_type

    original_query = models.CloudWatchBackend.get_metric_data

    def get_metric_data(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        results = original_query(self, *args, **kwargs)
        for result in results:
            values, timestamps = result.get("values"), result.get("timestamps")
            if values is None or timestamps is None:
                continue
            kept = [(v, t) for v, t in zip(values, timestamps) if v is not None]
            result["values"] = [v for v, _ in kept]
            result["timestamps"] = [t for _, t in kept]
        return results

    models.CloudWatchBackend.get_metric_data = get_metric_data
