-- impulse.redis: Redis commands on the worker's own connection (the
-- deployment's redis.address, username, password and db).
--
--   local redis = require "impulse.redis"
--   local token, err = redis.call("GET", "FCM_TOKEN:" .. uid .. ":1")
--   if token == redis.null then ... end   -- a missing key
--
-- Replies: strings, numbers, arrays as tables, redis.null for nil. An
-- error reply or a lost connection: nil, err, code. Each command has the
-- engine's rpcTimeoutMs.
local core = require "impulse.core"
local call = require "impulse.call"
local cjson = require "cjson"

local _M = {}

_M.null = cjson.null

_M.call = call.wrap(core.redis)

return _M
