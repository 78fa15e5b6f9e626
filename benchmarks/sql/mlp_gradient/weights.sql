-- The weights of params(tensor, i, j, w) as the tables of the hand-wired network,
-- w1(i, j, w), b1(j, b), w2(j, k, w) and b2(k, b), so that its forward pass and metrics
-- evaluate them.
CREATE OR REPLACE TABLE w1 AS SELECT i, j, w FROM params WHERE tensor = 'w1';

CREATE OR REPLACE TABLE b1 AS SELECT j, w AS b FROM params WHERE tensor = 'b1';

CREATE OR REPLACE TABLE w2 AS SELECT i AS j, j AS k, w FROM params WHERE tensor = 'w2';

CREATE OR REPLACE TABLE b2 AS SELECT j AS k, w AS b FROM params WHERE tensor = 'b2';
