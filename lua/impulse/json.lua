-- impulse.json: JSON (lua-cjson). encode(value) -> string; decode(string)
-- -> value | nil, err (never raises); json.null for JSON null.
local cjson = require "cjson.safe"

return {
  encode = cjson.encode,
  decode = cjson.decode,
  null = cjson.null,
}
