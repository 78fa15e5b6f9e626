-- The mini-batch of the current step: the training rows whose sample s the schedule
-- assigns to hyper.step. The forward pass reads its input from these two tables.
-- Reads schedule(step, s), hyper(step, lr), train_pixels(s, i, v) and train_labels(s, k, onehot).
CREATE OR REPLACE TABLE batch_pixels AS
SELECT d.* FROM train_pixels d JOIN schedule b ON d.s = b.s WHERE b.step = (SELECT step FROM hyper);

CREATE OR REPLACE TABLE batch_labels AS
SELECT d.* FROM train_labels d JOIN schedule b ON d.s = b.s WHERE b.step = (SELECT step FROM hyper);
