-- One training step, one statement: every parameter moves against the gradient of the loss
-- and the step counter moves on. {loss} stands for the query of loss.sql, quoted as a SQL
-- string; nothing here is a derivative written by hand.
-- Reads params(tensor, i, j, w) and hyper(lr), and what loss.sql reads.
CREATE OR REPLACE TABLE params AS
SELECT tensor, i, j,
       CASE WHEN tensor = 'step' THEN w + 1 ELSE w - (SELECT lr FROM hyper) * grad END AS w
FROM gradient({loss}, 'params.w');
