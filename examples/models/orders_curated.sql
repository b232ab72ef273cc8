-- Curated orders: the ones that count as sales (paid or shipped), one row per order, with
-- the day they were placed.
SELECT
  order_id,
  customer_id,
  country,
  status,
  DATE(ordered_at) AS order_date,
  quantity,
  unit_price,
  ROUND(amount, 2) AS amount,
  order_size
FROM orders
WHERE status IN ('paid', 'shipped')
