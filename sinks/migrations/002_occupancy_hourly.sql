-- License-aware extras. The compose image runs the full ("timescale" license) edition,
-- which has compression and continuous aggregates; the Docker-less stack builds the
-- Apache-2 edition, which has neither. One migration serves both: the branch is chosen
-- at run time, and both define occupancy_hourly with the same columns, so dashboards do
-- not care which one they read.
--
-- occupancy_hourly: per slot key and hour (UTC) of observed_at, the free count after the
-- hour's last change (last_free), the lowest free count seen in the hour (min_free) and
-- the number of changes (changes).
--
-- Statements of the "timescale" branch are written statically (not EXECUTEd strings) so
-- that PL/pgSQL syntax-checks them on every edition when this block is compiled.
DO $$
BEGIN
    IF current_setting('timescaledb.license') = 'timescale' THEN
        -- Segment by slot key: queries filter on one key, and a key's changes compress
        -- well together; order by (observed_at, seq), the rest of the primary key.
        ALTER TABLE availability_changes SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'key',
            timescaledb.compress_orderby = 'observed_at, seq'
        );
        -- A 90-day chunk is compressed once all of it is older than 90 days: the latest
        -- one or two stay row-oriented for late inserts and the sink's successor lookups
        -- (sinks/writer.py), which on compressed chunks would decompress segments.
        PERFORM add_compression_policy('availability_changes', compress_after => INTERVAL '90 days',
                                       if_not_exists => true);

        -- WITH NO DATA: a continuous aggregate created WITH DATA cannot be created inside a
        -- transaction block or function (TimescaleDB refreshes it in its own transactions);
        -- the policy below materializes it. materialized_only = false (real-time
        -- aggregation, off by default since 2.13) so that not-yet-materialized buckets are
        -- computed from availability_changes at query time: the view is never stale.
        CREATE MATERIALIZED VIEW occupancy_hourly
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '1 hour', observed_at) AS bucket,
               key,
               last(free, observed_at) AS last_free,
               min(free)               AS min_free,
               count(*)                AS changes
        FROM availability_changes
        GROUP BY time_bucket(INTERVAL '1 hour', observed_at), key
        WITH NO DATA;
        -- start_offset NULL: refresh from the oldest data, because replays insert changes
        -- observed years ago; a refresh only recomputes invalidated buckets, so this stays
        -- cheap. end_offset 1 hour leaves the hour still being written to real-time
        -- aggregation.
        PERFORM add_continuous_aggregate_policy('occupancy_hourly',
                                                start_offset => NULL,
                                                end_offset => INTERVAL '1 hour',
                                                schedule_interval => INTERVAL '15 minutes',
                                                if_not_exists => true);
    ELSE
        CREATE VIEW occupancy_hourly AS
        SELECT time_bucket(INTERVAL '1 hour', observed_at) AS bucket,
               key,
               last(free, observed_at) AS last_free,
               min(free)               AS min_free,
               count(*)                AS changes
        FROM availability_changes
        GROUP BY time_bucket(INTERVAL '1 hour', observed_at), key;
    END IF;
END
$$;

-- Covered by the default privileges of 001 as well; explicit, because a continuous
-- aggregate is created through TimescaleDB's own DDL path.
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
