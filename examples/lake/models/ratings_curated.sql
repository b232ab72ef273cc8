-- Curated ratings: valid stars only, one row per user and movie (their latest rating),
-- with the dt= partition of the raw file each row came from.
SELECT
  user_id,
  movie_id,
  rating,
  TIMESTAMP_SECONDS(rated_at) AS rated_at,
  CAST(REGEXP_EXTRACT(_ferry_source_uri, r'dt=(\d{4}-\d{2}-\d{2})') AS DATE) AS dt
FROM ratings
WHERE rating BETWEEN 0.5 AND 5
QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id, movie_id ORDER BY rated_at DESC) = 1
