-- The best-rated movie of each genre, among movies with at least two ratings.
WITH per_movie AS (
  SELECT genre, m.title, ROUND(AVG(r.rating), 2) AS avg_rating, COUNT(*) AS votes
  FROM ratings_curated AS r
  JOIN movies AS m USING (movie_id)
  CROSS JOIN UNNEST(SPLIT(m.genres, '|')) AS genre
  GROUP BY genre, m.title
  HAVING COUNT(*) >= 2
)
SELECT genre, title, avg_rating, votes
FROM per_movie
QUALIFY ROW_NUMBER() OVER (PARTITION BY genre ORDER BY avg_rating DESC, votes DESC, title) = 1
