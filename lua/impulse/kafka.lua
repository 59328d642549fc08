-- impulse.kafka: produce a record; the message waits for the broker's
-- acknowledgement (acks=all), so "true" means it is stored.
--
--   local kafka = require "impulse.kafka"
--   local ok, err = kafka.produce("audit", key, value, { { "operationID", ctx.operationID } })
--
-- Do not add headers beyond OpenIM's four to a topic openim-push reads: a
-- fifth header crashes it.
local core = require "impulse.core"
local call = require "impulse.call"

local _M = {}

_M.produce = call.wrap(core.produce)

return _M
