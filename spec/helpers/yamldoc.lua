-- YAML text to Lua tables, for the specs that read manifests and Helm
-- values (spec/01-unit/11-deploy_spec.lua).
--
-- Built on the libyaml binding Debian ships as lua-yaml (module "yaml", a
-- dependency of lua-busted through lua-cliargs): its parser yields events,
-- this module folds them into tables. Scalars resolve as YAML 1.2's core
-- schema does for plain scalars (null, true/false, integers and decimals);
-- quoted scalars stay strings. A null value drops its key (a manifest's
-- `annotations:` with nothing under it reads as absent). Sequences carry
-- the metatable _M.SEQ, so an empty list and an empty map stay apart when
-- written back (gotmpl's toYaml). Anchors and aliases are refused: no file
-- this reads uses them.
local _M = {}

local yaml = require "yaml"

local error, getmetatable, pcall, setmetatable, tonumber, tostring, type =
  error, getmetatable, pcall, setmetatable, tonumber, tostring, type
local tbl_remove = table.remove
local str_match = string.match

_M.SEQ = { __name = "yaml sequence" }

-- true when t was read from a YAML sequence or made by _M.seq
function _M.is_seq(t)
  return type(t) == "table" and getmetatable(t) == _M.SEQ
end

-- a Lua array marked as a sequence (for values given by a spec)
function _M.seq(t)
  return setmetatable(t or {}, _M.SEQ)
end

local NULL = {}

local function scalar(ev)
  local v = ev.value
  if ev.style ~= "PLAIN" then return v end
  if v == "" or v == "~" or v == "null" or v == "Null" or v == "NULL" then return NULL end
  if v == "true" or v == "True" or v == "TRUE" then return true end
  if v == "false" or v == "False" or v == "FALSE" then return false end
  if str_match(v, "^[-+]?%d+$") or str_match(v, "^[-+]?%d*%.%d+$") then return tonumber(v) end
  return v
end

-- Every document of text, in order, as a Lua array (an empty document is
-- skipped). Raises on text libyaml cannot parse, naming the line.
function _M.load_all(text, name)
  if type(text) ~= "string" then
    error("bad argument #1 to 'load_all': string expected, got " .. type(text), 2)
  end
  local docs, stack = {}, {}
  local top -- { kind = "map"|"seq"|"doc", value, key }
  local function add(v)
    if top.kind == "seq" then
      if v ~= NULL then top.value[#top.value + 1] = v end
    elseif top.kind == "map" then
      if top.key == nil then
        if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
          error((name or "yaml") .. ": a map key that is not a scalar", 0)
        end
        top.key = v
      else
        if v ~= NULL then top.value[top.key] = v end
        top.key = nil
      end
    else
      top.value = v
    end
  end
  local ok, err = pcall(function()
    for ev in yaml.parser(text) do
      local t = ev.type
      if t == "DOCUMENT_START" then
        top = { kind = "doc" }
        stack = { top }
      elseif t == "DOCUMENT_END" then
        if top.value ~= nil and top.value ~= NULL then docs[#docs + 1] = top.value end
      elseif t == "MAPPING_START" or t == "SEQUENCE_START" then
        local frame = { kind = t == "MAPPING_START" and "map" or "seq",
                        value = t == "MAPPING_START" and {} or setmetatable({}, _M.SEQ) }
        stack[#stack + 1] = frame
        top = frame
      elseif t == "MAPPING_END" or t == "SEQUENCE_END" then
        local done = tbl_remove(stack)
        top = stack[#stack]
        add(done.value)
      elseif t == "SCALAR" then
        add(scalar(ev))
      elseif t == "ALIAS" then
        error((name or "yaml") .. ": aliases are not supported", 0)
      end
    end
  end)
  if not ok then error((name or "yaml") .. ": " .. tostring(err), 0) end
  return docs
end

-- The one document of text (nil for an empty one); raises when there are more.
function _M.load(text, name)
  local docs = _M.load_all(text, name)
  if #docs > 1 then error((name or "yaml") .. ": " .. #docs .. " documents, expected one", 2) end
  return docs[1]
end

return _M
