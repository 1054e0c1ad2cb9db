"""CloudWatch Logs FilterLogEvents always interleaving the streams of a group, as AWS does.

AWS has ignored FilterLogEvents' `interleaved` parameter since June 2019: its answer always
merges the streams of the log group in time order, page after page (the SDKs mark the parameter
deprecated). moto 5.1.22 still reads it and defaults it to false, answering with every event of
one stream, then every event of the next; a reader of several tasks' streams (`panka logs`) then
gets pages out of time order. This patch makes moto's backend interleave whatever the request
says, as AWS does. Filtering, paging and tokens are left to moto.
"""


def apply() -> None:
    from moto.logs import models

    original = models.LogsBackend.filter_log_events
    if getattr(original, "_panka_interleaved", False):
        return

    def filter_log_events(  # type: ignore[no-untyped-def]
        self,
        log_group_name,
        log_stream_names,
        start_time,
        end_time,
        limit,
        next_token,
        filter_pattern,
        interleaved,
    ):
        del interleaved  # AWS: "ignored and assumed to be true"
        return original(
            self,
            log_group_name,
            log_stream_names,
            start_time,
            end_time,
            limit,
            next_token,
            filter_pattern,
            True,
        )

    filter_log_events._panka_interleaved = True  # type: ignore[attr-defined]
    models.LogsBackend.filter_log_events = filter_log_events
