-- Moves hyper(step, lr) on to the next step of the schedule, after the updates.
CREATE OR REPLACE TABLE hyper AS SELECT step + 1 AS step, lr FROM hyper;
