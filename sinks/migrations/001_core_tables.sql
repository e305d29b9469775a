-- slotstream's tables. Applied by sinks.migrate in one transaction, with search_path set
-- to the slotstream schema (then the schema holding the timescaledb extension), so
-- names below are unqualified. :"schema" and :"reader" are replaced by sinks.migrate
-- with quoted identifiers (psycopg.sql.Identifier) of PostgresSettings.db_schema and
-- .reader_user; no other text is substituted.
--
-- Times are timestamptz (UTC on the wire), durations seconds, counts integers.
--
-- Chunk intervals: sized for the main job, ~2 years of daily hotel data
-- (hotel_bookings.csv.gz: ~119k bookings, ~165k booking events, ~0.5-1M change rows).
-- TimescaleDB advises chunks whose data and indexes fit comfortably in memory (~25 % of
-- it for the recent ones) and warns that many small chunks cost planning and execution
-- time. At this volume the risk is too many chunks: the sink looks up each change's
-- neighbours per row (sinks/writer.py), and every such lookup visits the chunk list.
-- Measured on ~1M changes spread over 2 years (write_batch, local stack): 30-day chunks
-- (25 chunks, <= 20 MB each) ~7.7k changes/s; 90-day (9, <= 65 MB) ~12.5k/s; 365-day
-- (3, <= 255 MB, about shared_buffers) ~20k/s. 90 days keeps chunks far below memory
-- and quarterly drop_chunks/compression granularity. set_chunk_time_interval() changes
-- it for future chunks if a denser source arrives.

-- Dashboards read with the reader role: it may read every table and view here, including
-- those created by later migrations (default privileges of the migrating owner role).
GRANT USAGE ON SCHEMA :"schema" TO :"reader";
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"reader";

-- Booking events (seed 002: bookings created / cancelled), one row per event.
CREATE TABLE booking_events (
    event_id        text        NOT NULL,          -- "<booking_id>:<kind>", deterministic
    event_time      timestamptz NOT NULL,
    seq             bigint      NOT NULL,          -- position in the resource's event order
    kind            text        NOT NULL CHECK (kind IN ('created', 'cancelled')),
    booking_id      text        NOT NULL,
    source          text        NOT NULL,
    resource_id     text        NOT NULL,
    arrival_date    date        NOT NULL,
    nights          integer     NOT NULL,
    lead_time_days  integer     NOT NULL,          -- days between booking and arrival
    rooms           integer     NOT NULL,
    schema_version  smallint    NOT NULL,
    -- A hypertable's unique keys must contain its time column; event_id alone is the
    -- real identity, event_time is fixed per event, so this is the same constraint.
    PRIMARY KEY (event_id, event_time)
);
-- ~165k events over ~3 years of booking dates: 90-day chunks, ~12-15 chunks of ~15k rows.
SELECT create_hypertable('booking_events', by_range('event_time', INTERVAL '90 days'));
CREATE INDEX booking_events_resource_idx ON booking_events (source, resource_id, event_time DESC);

-- Change events: one row per AvailabilityChange (seed 000: append only on change).
CREATE TABLE availability_changes (
    key                  text             NOT NULL,  -- "<source>|<resource_id>|<slot>"
    source               text             NOT NULL,
    resource_id          text             NOT NULL,
    slot                 text             NOT NULL,
    slot_start           timestamptz      NOT NULL,
    slot_end             timestamptz      NOT NULL,
    observed_at          timestamptz      NOT NULL,
    seq                  bigint           NOT NULL,
    event_id             text             NOT NULL,  -- "<key>@<observed_at>#<seq>"
    prev_capacity        integer,                    -- NULL on first sight or unknown
    prev_free            integer,
    prev_status          text,
    capacity             integer,
    free                 integer,
    status               text             NOT NULL,
    delta_free           integer,                    -- free - prev_free
    previous_first_seen  timestamptz,                -- bounds of the previous state interval
    previous_last_seen   timestamptz,
    previous_duration_s  double precision,           -- seconds
    occupancy_percent    double precision,           -- 0..100 (seed 001 rules)
    occupancy_steps      integer,                    -- 0..100 in steps of 10
    occupancy_status     text             NOT NULL,
    attributes           jsonb            NOT NULL DEFAULT '{}',
    -- (key, observed_at, seq) identifies a change (event_id encodes the same triple). The
    -- index also serves "latest changes of a key": WHERE key = $1 ORDER BY observed_at DESC
    -- is a backward scan of it, so no separate (key, observed_at DESC) index is needed.
    PRIMARY KEY (key, observed_at, seq)
);
-- ~1M rows over ~2 years: 90-day chunks, ~9 chunks of ~110k rows (<= 65 MB with indexes).
SELECT create_hypertable('availability_changes', by_range('observed_at', INTERVAL '90 days'));
-- Dashboards: how the nights (slots) of one hotel filled, in observation order.
CREATE INDEX availability_changes_slot_idx
    ON availability_changes (source, resource_id, slot_start, observed_at);

-- State intervals (seed 001: HutAvailabilityHistory with first_checked / last_checked):
-- one row per state a slot was in, from the change that opened it until the next change.
CREATE TABLE state_intervals (
    key                text             NOT NULL,
    source             text             NOT NULL,
    resource_id        text             NOT NULL,
    slot               text             NOT NULL,
    slot_start         timestamptz      NOT NULL,
    capacity           integer,
    free               integer,
    status             text             NOT NULL,
    occupancy_percent  double precision,
    first_seen         timestamptz      NOT NULL,  -- seed 001 first_checked
    last_seen          timestamptz      NOT NULL,  -- seed 001 last_checked
    ended_at           timestamptz,                -- observed_at of the next change; NULL while open
    first_seq          bigint           NOT NULL,  -- seq of the change that opened it
    -- Observations of this state: from AvailabilityCurrent snapshots while open (the
    -- largest count seen), then the closing change's count (see end_confirmed).
    observations       integer          NOT NULL,
    -- True when the change that ended this interval names it as its previous one
    -- (previous_first_seen = first_seen) and describes it: last_seen and observations are
    -- then its previous_last_seen and previous_observations (migration 003), exact. False
    -- while open, or when a change in between is missing (last_seen / observations are
    -- then the latest the interval's own records showed).
    end_confirmed      boolean          NOT NULL DEFAULT false,
    ended_seq          bigint,                     -- seq of the change that ended it
    PRIMARY KEY (key, first_seen, first_seq)
);
-- One interval per change: the same volume and interval as availability_changes.
SELECT create_hypertable('state_intervals', by_range('first_seen', INTERVAL '90 days'));
CREATE INDEX state_intervals_slot_idx ON state_intervals (source, resource_id, slot_start, first_seen);

-- Latest state per slot (seed 001: HutAvailability), one row per key; small, so a plain
-- table (it is updated in place, which hypertables are not made for).
CREATE TABLE availability_current (
    key                text             PRIMARY KEY,
    source             text             NOT NULL,
    resource_id        text             NOT NULL,
    slot               text             NOT NULL,
    slot_start         timestamptz      NOT NULL,
    slot_end           timestamptz      NOT NULL,
    capacity           integer,
    free               integer,
    status             text             NOT NULL,
    occupancy_percent  double precision,
    occupancy_steps    integer,
    occupancy_status   text             NOT NULL,
    first_seen         timestamptz      NOT NULL,  -- the open interval
    last_seen          timestamptz      NOT NULL,
    first_seq          bigint           NOT NULL,
    last_seq           bigint           NOT NULL,  -- monotonic: older snapshots never win
    observations       integer          NOT NULL,
    attributes         jsonb            NOT NULL DEFAULT '{}',
    updated_at         timestamptz      NOT NULL DEFAULT now()  -- when the sink last changed the row
);
CREATE INDEX availability_current_slot_idx ON availability_current (source, resource_id, slot_start);

-- Created / cancelled / net bookings per resource per day or month (seed 002's dashboard).
CREATE TABLE booking_counts (
    source       text     NOT NULL,
    resource_id  text     NOT NULL,
    period       text     NOT NULL CHECK (period IN ('day', 'month')),
    bucket       date     NOT NULL,  -- the day, or the first day of the month (UTC)
    created      integer  NOT NULL,
    cancelled    integer  NOT NULL,
    net          integer  NOT NULL,
    last_seq     bigint   NOT NULL,  -- seq of the last booking event counted; monotonic
    PRIMARY KEY (source, resource_id, period, bucket)
);

-- Records that could not be processed, with the reason and the raw payload. dl_key is the
-- origin ("<path>:<line>" or "<topic>:<partition>:<offset>"), so a redelivered record
-- dead-lettered twice by the same stage is stored once.
CREATE TABLE dead_letters (
    stage         text         NOT NULL,
    dl_key        text         NOT NULL,
    failed_at     timestamptz  NOT NULL,
    error         text         NOT NULL,
    raw           text         NOT NULL,
    raw_encoding  text         NOT NULL CHECK (raw_encoding IN ('utf-8', 'base64')),
    origin        jsonb        NOT NULL,
    PRIMARY KEY (stage, dl_key)
);
CREATE INDEX dead_letters_failed_at_idx ON dead_letters (failed_at DESC);

-- schema_migrations was created by sinks.migrate before the default privileges existed.
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
