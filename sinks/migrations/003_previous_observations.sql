-- The change that closes a state interval carries that interval's observation count
-- (AvailabilityChange.previous_observations), so a closed interval's row is exact and no
-- longer depends on which AvailabilityCurrent snapshots the sink happened to receive
-- (batching, restarts). NULL for changes written before this column existed.
ALTER TABLE availability_changes ADD COLUMN previous_observations integer;
