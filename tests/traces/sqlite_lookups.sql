-- Point lookups for tests/traces/sqlite3-lookups on the 16,000-row table
-- record.sh makes (1 KB rows, about 18 MB): a 200 MB page cache warmed by
-- one full scan, then 4,000 pseudo-random primary-key lookups with 90% in
-- ids 1..5000, then 4,000 with 90% in ids 11001..16000 (the hot set moves
-- halfway), 10% uniform over all rows.
PRAGMA cache_size = -200000;
SELECT count(*), sum(length(id)) FROM t;
WITH RECURSIVE r(i, x) AS (SELECT 0, 12345 UNION ALL
  SELECT i + 1, (x * 1103515245 + 12345) % 2147483648 FROM r WHERE i < 4000)
SELECT sum(length(substr(v, 1, 8))) FROM r JOIN t ON t.id = CASE
  WHEN x % 10 THEN 1 + (x / 16) % 5000 ELSE 1 + (x / 16) % 16000 END;
WITH RECURSIVE r(i, x) AS (SELECT 0, 67890 UNION ALL
  SELECT i + 1, (x * 1103515245 + 12345) % 2147483648 FROM r WHERE i < 4000)
SELECT sum(length(substr(v, 1, 8))) FROM r JOIN t ON t.id = CASE
  WHEN x % 10 THEN 11001 + (x / 16) % 5000 ELSE 1 + (x / 16) % 16000 END;
