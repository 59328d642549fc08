-- impulse.http: HTTP requests from the worker's loop (libcurl; HTTP/2 over
-- TLS when the server offers it).
--
--   local http = require "impulse.http"
--   local res, err = http.request { method = "POST", url = "https://...",
--     headers = { ["Content-Type"] = "application/json" }, body = "{}", timeout_ms = 2000 }
--   -- res.status, res.body
local core = require "impulse.core"
local call = require "impulse.call"

local type, error = type, error

local raw = call.wrap(core.http)

local _M = {}

function _M.request(req)
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'request' (table with a url expected)", 2)
  end
  return raw(req)
end

return _M
