-- The step's update: every parameter moves against its gradient from backward.sql, and the
-- step counter moves on. Reads gradients(tensor, i, j, value, grad) and hyper(step, lr).
CREATE OR REPLACE TABLE w1 AS
SELECT i, j, value - (SELECT lr FROM hyper) * grad AS w FROM gradients WHERE tensor = 'w1';

CREATE OR REPLACE TABLE b1 AS
SELECT j, value - (SELECT lr FROM hyper) * grad AS b FROM gradients WHERE tensor = 'b1';

CREATE OR REPLACE TABLE w2 AS
SELECT i AS j, j AS k, value - (SELECT lr FROM hyper) * grad AS w FROM gradients WHERE tensor = 'w2';

CREATE OR REPLACE TABLE b2 AS
SELECT j AS k, value - (SELECT lr FROM hyper) * grad AS b FROM gradients WHERE tensor = 'b2';

CREATE OR REPLACE TABLE hyper AS SELECT step + 1 AS step, lr FROM hyper;
