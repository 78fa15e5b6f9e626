-- The whole test set as the batch, so that the forward pass and metrics.sql evaluate the
-- network on it. Reads test_pixels(s, i, v) and test_labels(s, k, onehot).
CREATE OR REPLACE TABLE batch_pixels AS SELECT * FROM test_pixels;

CREATE OR REPLACE TABLE batch_labels AS SELECT * FROM test_labels;
