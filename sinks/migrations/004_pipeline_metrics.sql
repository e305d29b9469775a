-- Pipeline health (the Grafana "Pipeline health" dashboard). The sink samples, every
-- SinkSettings.health_interval_s seconds (sinks/health.py):
--   component 'kafka': the broker's own bookkeeping, read with the admin API
--     metric 'end_offset'    subject = topic role (booking-events, observations,
--                            availability-changes, availability-current, booking-counts,
--                            dead-letter): messages ever appended, summed over partitions;
--                            its rate is the topic's messages/s
--     metric 'consumer_lag'  subject = 'stream' | 'sink': messages of the group's input
--                            topics not yet committed
--   component 'sink': what the sink wrote
--     metric 'last_observed_at'  subject = source: newest observed_at written (epoch s)
--     metric 'last_received_at'  subject = source: wall clock when the sink last wrote a
--                                record of that source (epoch s); now() minus it is the
--                                source's observation age
--     metric 'records_written'   subject = table: rows the sink process wrote since it
--                                started (a counter that restarts with the process)
-- Subjects are topic roles, not full topic names, so dashboards do not depend on
-- KafkaSettings.topic_prefix.
CREATE TABLE pipeline_metrics (
    sampled_at  timestamptz       NOT NULL,
    component   text              NOT NULL,
    metric      text              NOT NULL,
    subject     text              NOT NULL,
    value       double precision  NOT NULL,
    PRIMARY KEY (metric, subject, sampled_at)
);
-- ~15 rows per 10 s sample, ~130k rows a day: 1-day chunks, dropped after 30 days
-- (policy below on the full edition; `slotstream db prune` on the Apache build).
SELECT create_hypertable('pipeline_metrics', by_range('sampled_at', INTERVAL '1 day'));

DO $$
BEGIN
    IF current_setting('timescaledb.license') = 'timescale' THEN
        PERFORM add_retention_policy('pipeline_metrics', INTERVAL '30 days', if_not_exists => true);
    END IF;
END
$$;

GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
