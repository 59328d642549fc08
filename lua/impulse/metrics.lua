-- impulse.metrics: a script's own Prometheus metrics, on /metrics.
--
--   local metrics = require "impulse.metrics"
--   metrics.inc("vip_offline_pushes_total", { tenant = "cn" })
--   metrics.observe("policy_lookup_ms", nil, 3.2)
--   metrics.set("vip_users", nil, 1234)
--
-- Names: letters, digits and _; a name keeps the kind it was first used
-- with. Histograms have buckets 0.5 … 10000 (milliseconds fit well).
local core = require "impulse.core"

local metric = core.metric

local _M = {}

function _M.inc(name, labels, n) metric("counter", name, labels, n or 1) end
function _M.set(name, labels, v) metric("gauge", name, labels, v) end
function _M.observe(name, labels, v) metric("histogram", name, labels, v) end

return _M
