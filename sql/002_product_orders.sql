-- ordermon: shop-table
-- Statements on the shop's own table. Each runs on its own (not in a transaction) with a short
-- lock_timeout; indexes are built CONCURRENTLY so the shop's writes never wait behind them.
-- They need the owner of product_orders: if ordermon's role is not, `ordermon migrate` prints
-- them for the owner to run, then finishes once the catalog shows them.

ALTER TABLE product_orders ADD COLUMN IF NOT EXISTS provider_referans varchar(255);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_provider_referans
    ON product_orders (provider_referans);

-- Enrolment reads only the orders that may need watching, however many finished ones there are.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_ordermon_orders_monitored
    ON product_orders ("providerId", "sentAt")
    WHERE status = 'pending' AND "externalStatus" IN ('sent', 'queued', 'processing');
