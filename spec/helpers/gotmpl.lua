-- A renderer for the subset of Go templates (text/template plus the few
-- Helm and sprig functions) that deploy/helm/impulse uses, so a spec can
-- render the chart without Helm (spec/01-unit/11-deploy_spec.lua).
--
-- Supported, with Go's meaning:
--   {{ pipeline }}, {{- trims the text before, -}} the text after
--   {{/* comment */}}
--   {{ if p }} {{ else if p }} {{ else }} {{ end }}, {{ with p }}...{{ end }}
--   {{ range p }}...{{ end }} over a list (in order) or a map (sorted keys);
--     the dot is the element
--   {{ define "name" }}...{{ end }} and include "name" ctx
--   operands: . .a.b $ $.a.b "string" 12 true false (pipeline)
--   a field holding a function is called with the command's arguments
--   (.Files.Get "path")
--   pipelines: a | f b c calls f(b, c, a)
--   functions: include toYaml indent nindent quote default not eq ne and or
--     printf (%s %d %v) replace
-- Truth as Go's: false, 0, nil, "" and empty lists and maps are false.
-- Stricter than Helm on purpose: a field read through a nil (.Values.typo.x)
-- raises instead of printing nothing, and so does .Files.Get of a missing
-- file, so a typo in the chart fails the spec. Not supported (raises):
-- variables ($x := ...), template, block, other functions.
--
-- render_chart(dir, values_override, release) renders every
-- templates/*.yaml the way `helm template` does: values.yaml merged with
-- the override (maps merged, anything else replaced), .Chart from
-- Chart.yaml, .Release {Name, Namespace, Service}, .Files.Get relative to
-- the chart; it returns the documents joined with "---" and a list of
-- {name, text} per template.
local _M = {}

local yamldoc = require "spec.helpers.yamldoc"

local assert, error, ipairs, next, pairs, select, tonumber, tostring, type, unpack =
  assert, error, ipairs, next, pairs, select, tonumber, tostring, type, unpack
local io_open, io_popen = io.open, io.popen
local str_byte, str_find, str_format, str_gsub, str_match, str_rep, str_sub =
  string.byte, string.find, string.format, string.gsub, string.match, string.rep, string.sub
local tbl_concat, tbl_sort = table.concat, table.sort
local math_floor, math_huge = math.floor, math.huge

---------------------------------------------------------------- lexing

-- template text → array of {text = s} and {action = src, line = n}
local function lex(src, name)
  local items, pos, trim_next = {}, 1, false
  while true do
    local s = str_find(src, "{{", pos, true)
    local text = str_sub(src, pos, s and s - 1 or #src)
    if trim_next then text = str_gsub(text, "^%s+", "") end
    if not s then
      items[#items + 1] = { text = text }
      return items
    end
    local close = str_find(src, "}}", s + 2, true)
    if not close then error(name .. ": unclosed action", 0) end
    local body = str_sub(src, s + 2, close - 1)
    local line = select(2, str_gsub(str_sub(src, 1, s), "\n", "")) + 1
    if str_match(body, "^%- ") then
      text = str_gsub(text, "%s+$", "")
      body = str_sub(body, 3)
    end
    trim_next = false
    if str_match(body, " %-$") then
      trim_next = true
      body = str_sub(body, 1, -3)
    end
    items[#items + 1] = { text = text }
    body = str_match(body, "^%s*(.-)%s*$")
    if not str_match(body, "^/%*.*%*/$") then
      items[#items + 1] = { action = body, line = line }
    end
    pos = close + 2
  end
end

-- one action's source → tokens {t = kind, v = value}
local function tokenize(src, where)
  local toks, i, n = {}, 1, #src
  while i <= n do
    local c = str_sub(src, i, i)
    if str_find(c, "%s") then
      i = i + 1
    elseif c == "\"" then
      local j, buf = i + 1, {}
      while true do
        local d = str_sub(src, j, j)
        if d == "" then error(where .. ": unterminated string", 0) end
        if d == "\"" then break end
        if d == "\\" then
          local e = str_sub(src, j + 1, j + 1)
          buf[#buf + 1] = e == "n" and "\n" or e == "t" and "\t" or e
          j = j + 2
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      toks[#toks + 1] = { t = "str", v = tbl_concat(buf) }
      i = j + 1
    elseif c == "(" or c == ")" or c == "|" then
      toks[#toks + 1] = { t = c }
      i = i + 1
    elseif c == "." or c == "$" then
      local word = str_match(src, "^[%$]?[%w_%.]*", i)
      local path = {}
      for part in word:gmatch("[%w_]+") do path[#path + 1] = part end
      toks[#toks + 1] = { t = "field", root = c == "$", path = path }
      i = i + #word
    elseif str_find(c, "[%d%-]") then
      local num = str_match(src, "^%-?%d+%.?%d*", i)
      if not num then error(where .. ": bad token at '" .. str_sub(src, i) .. "'", 0) end
      toks[#toks + 1] = { t = "lit", v = tonumber(num) }
      i = i + #num
    elseif str_find(c, "[%a_]") then
      local word = str_match(src, "^[%w_]+", i)
      if word == "true" or word == "false" then
        toks[#toks + 1] = { t = "lit", v = word == "true" }
      elseif word == "nil" then
        toks[#toks + 1] = { t = "lit", v = nil, isnil = true }
      else
        toks[#toks + 1] = { t = "ident", v = word }
      end
      i = i + #word
    else
      error(where .. ": unsupported syntax at '" .. str_sub(src, i) .. "'", 0)
    end
  end
  return toks
end

-- tokens → pipeline: array of commands, each an array of operands
local function parse_pipeline(toks, pos, where)
  local pipe, cmd = {}, {}
  while pos <= #toks do
    local tk = toks[pos]
    if tk.t == ")" then break end
    if tk.t == "|" then
      if #cmd == 0 then error(where .. ": empty command before '|'", 0) end
      pipe[#pipe + 1] = cmd
      cmd = {}
      pos = pos + 1
    elseif tk.t == "(" then
      local sub
      sub, pos = parse_pipeline(toks, pos + 1, where)
      if not toks[pos] or toks[pos].t ~= ")" then error(where .. ": missing ')'", 0) end
      cmd[#cmd + 1] = { t = "pipe", v = sub }
      pos = pos + 1
    else
      cmd[#cmd + 1] = tk
      pos = pos + 1
    end
  end
  if #cmd == 0 then error(where .. ": empty pipeline", 0) end
  pipe[#pipe + 1] = cmd
  return pipe, pos
end

local function compile(src, where)
  if str_find(src, ":=", 1, true) then error(where .. ": variables are not supported", 0) end
  local toks = tokenize(src, where)
  local pipe, pos = parse_pipeline(toks, 1, where)
  if pos <= #toks then error(where .. ": unexpected ')'", 0) end
  return pipe
end

local parse_block

-- the if/with/range action at items[i] → its node and the index of its {{ end }}
local function parse_cond(items, i, kw, rest, name, defines)
  local where = name .. ":" .. items[i].line
  local node = { kind = kw, cond = compile(rest, where), where = where }
  local body, j = parse_block(items, i + 1, name, defines)
  node.body = body
  local stop = items[j]
  if not stop then error(where .. ": {{ " .. kw .. " }} without {{ end }}", 0) end
  if stop.action == "end" then return node, j end
  local elif = str_match(stop.action, "^else%s+if%s+(.+)$")
  if elif then
    -- {{ else if p }}: an if in the else branch, ending at the same {{ end }}
    local inner
    inner, j = parse_cond(items, j, "if", elif, name, defines)
    node.orelse = { inner }
    return node, j
  end
  if stop.action ~= "else" then error(where .. ": unexpected {{ " .. stop.action .. " }}", 0) end
  node.orelse, j = parse_block(items, j + 1, name, defines)
  if not items[j] or items[j].action ~= "end" then error(where .. ": {{ else }} without {{ end }}", 0) end
  return node, j
end

-- items → tree of nodes; stops at {{ end }} / {{ else }} of the caller
parse_block = function(items, i, name, defines)
  local nodes = {}
  while i <= #items do
    local it = items[i]
    if it.text then
      if it.text ~= "" then nodes[#nodes + 1] = { text = it.text } end
      i = i + 1
    else
      local where = name .. ":" .. it.line
      local a = it.action
      local kw, rest = str_match(a, "^(%a+)%s*(.*)$")
      if a == "end" or a == "else" or kw == "else" then
        return nodes, i
      elseif kw == "if" or kw == "with" or kw == "range" then
        local node, j = parse_cond(items, i, kw, rest, name, defines)
        nodes[#nodes + 1] = node
        i = j + 1
      elseif kw == "define" then
        local dname = str_match(rest, "^\"(.-)\"$")
        if not dname then error(where .. ": define needs a quoted name", 0) end
        local body, j = parse_block(items, i + 1, name, defines)
        if not items[j] or items[j].action ~= "end" then error(where .. ": define without end", 0) end
        defines[dname] = body
        i = j + 1
      elseif kw == "template" or kw == "block" then
        error(where .. ": {{ " .. kw .. " }} is not supported", 0)
      else
        nodes[#nodes + 1] = { kind = "out", pipe = compile(a, where), where = where }
        i = i + 1
      end
    end
  end
  return nodes, i
end

---------------------------------------------------------------- values

local function truthy(v)
  if v == nil or v == false or v == 0 or v == "" then return false end
  if type(v) == "table" then return next(v) ~= nil end
  return true
end

local function fmt_number(n)
  if n == math_floor(n) and n > -math_huge and n < math_huge then return str_format("%d", n) end
  return tostring(n)
end

local function to_str(v, where)
  if v == nil then return "" end
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return fmt_number(v) end
  if t == "boolean" then return tostring(v) end
  error(where .. ": cannot print a " .. t .. " (use toYaml)", 0)
end

-- YAML words a plain scalar must not be, lest it read as another type
local RESERVED = {}
for w in ("true false yes no on off null ~ y n"):gmatch("%S+") do
  RESERVED[w] = true
end

local function yaml_scalar(v)
  if type(v) == "number" then return fmt_number(v) end
  if type(v) == "boolean" then return tostring(v) end
  local s = tostring(v)
  local plain = s ~= "" and not RESERVED[s:lower()] and not tonumber(s)
    and not str_find(s, "^[%s%-%?:,%[%]{}#&%*!|>'\"%%@`]")
    and not str_find(s, "%c") and not str_find(s, ": ") and not str_find(s, " #")
    and not str_find(s, "[%s:]$")
  if plain then return s end
  return "\"" .. str_gsub(s, "[%c\"\\]", function(c)
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    if c == "\"" or c == "\\" then return "\\" .. c end
    return str_format("\\x%02x", str_byte(c))
  end) .. "\""
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  tbl_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Lua value → YAML lines (block style, keys sorted, as Helm's toYaml)
local function emit(v, ind, out)
  local pad = str_rep(" ", ind)
  if yamldoc.is_seq(v) then
    for _, e in ipairs(v) do
      if type(e) == "table" and next(e) ~= nil then
        local sub = {}
        emit(e, 0, sub)
        out[#out + 1] = pad .. "- " .. sub[1]
        for k = 2, #sub do out[#out + 1] = pad .. "  " .. sub[k] end
      else
        out[#out + 1] = pad .. "- " .. (type(e) == "table" and (yamldoc.is_seq(e) and "[]" or "{}")
          or yaml_scalar(e))
      end
    end
  else
    for _, k in ipairs(sorted_keys(v)) do
      local e = v[k]
      if type(e) == "table" and next(e) ~= nil then
        out[#out + 1] = pad .. yaml_scalar(k) .. ":"
        emit(e, ind + 2, out)
      elseif type(e) == "table" then
        out[#out + 1] = pad .. yaml_scalar(k) .. ": " .. (yamldoc.is_seq(e) and "[]" or "{}")
      else
        out[#out + 1] = pad .. yaml_scalar(k) .. ": " .. yaml_scalar(e)
      end
    end
  end
end

function _M.to_yaml(v)
  if v == nil then return "null" end
  if type(v) ~= "table" then return yaml_scalar(v) end
  if next(v) == nil then return yamldoc.is_seq(v) and "[]" or "{}" end
  local out = {}
  emit(v, 0, out)
  return tbl_concat(out, "\n")
end

local function indent(n, s)
  local pad = str_rep(" ", n)
  return pad .. str_gsub(s, "\n", "\n" .. pad)
end

local function go_quote(s)
  return "\"" .. str_gsub(s, "[%c\"\\]", function(c)
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    if c == "\"" or c == "\\" then return "\\" .. c end
    return str_format("\\x%02x", str_byte(c))
  end) .. "\""
end

---------------------------------------------------------------- evaluation

local eval_pipe, exec

local FUNCS
FUNCS = {
  include = function(ctx, where, name, data)
    local body = ctx.defines[name]
    if not body then error(where .. ": no template named \"" .. tostring(name) .. "\"", 0) end
    local out = {}
    exec(body, { dot = data, root = ctx.root, defines = ctx.defines }, out)
    return tbl_concat(out)
  end,
  toYaml = function(_, _, v) return _M.to_yaml(v) end,
  indent = function(_, where, n, s) return indent(n, to_str(s, where)) end,
  nindent = function(_, where, n, s) return "\n" .. indent(n, to_str(s, where)) end,
  quote = function(_, where, ...)
    local out = {}
    for k = 1, select("#", ...) do
      local v = select(k, ...)
      if v ~= nil then out[#out + 1] = go_quote(to_str(v, where)) end
    end
    return tbl_concat(out, " ")
  end,
  default = function(_, _, d, v)
    if truthy(v) then return v end
    return d
  end,
  ["not"] = function(_, _, v) return not truthy(v) end,
  eq = function(_, _, a, b) return a == b end,
  ne = function(_, _, a, b) return a ~= b end,
  ["and"] = function(_, _, ...)
    local v
    for k = 1, select("#", ...) do
      v = select(k, ...)
      if not truthy(v) then return v end
    end
    return v
  end,
  ["or"] = function(_, _, ...)
    local v
    for k = 1, select("#", ...) do
      v = select(k, ...)
      if truthy(v) then return v end
    end
    return v
  end,
  printf = function(_, where, f, ...)
    local args, k = { ... }, 0
    return (str_gsub(f, "%%([sdv%%])", function(c)
      if c == "%" then return "%" end
      k = k + 1
      return to_str(args[k], where)
    end))
  end,
  replace = function(_, where, old, new, s)
    s = to_str(s, where)
    local out, pos = {}, 1
    while true do
      local a, b = str_find(s, old, pos, true)
      if not a then break end
      out[#out + 1] = str_sub(s, pos, a - 1) .. new
      pos = b + 1
    end
    out[#out + 1] = str_sub(s, pos)
    return tbl_concat(out)
  end,
}

local function field(ctx, tk, where)
  local v = tk.root and ctx.root or ctx.dot
  local walked = tk.root and "$" or ""
  for _, part in ipairs(tk.path) do
    if type(v) ~= "table" then
      error(where .. ": nil pointer evaluating " .. (walked == "" and "." or walked) .. "." .. part, 0)
    end
    v = v[part]
    walked = walked .. "." .. part
  end
  return v
end

local function operand(ctx, tk, where)
  if tk.t == "field" then return field(ctx, tk, where) end
  if tk.t == "str" or tk.t == "lit" then return tk.v end
  if tk.t == "pipe" then return eval_pipe(ctx, tk.v, where) end
  error(where .. ": '" .. tostring(tk.v) .. "' is a function, not a value", 0)
end

local function eval_cmd(ctx, cmd, where, piped, has_piped)
  local head = cmd[1]
  local args = {}
  local fn
  if head.t == "ident" then
    fn = FUNCS[head.v]
    if not fn then error(where .. ": function \"" .. head.v .. "\" not supported", 0) end
  else
    local v = operand(ctx, head, where)
    if type(v) ~= "function" then
      if #cmd > 1 or has_piped then error(where .. ": can't give arguments to a non-function", 0) end
      return v
    end
    fn = function(_, _, ...) return v(...) end
  end
  for k = 2, #cmd do args[#args + 1] = operand(ctx, cmd[k], where) end
  local n = #cmd - 1
  if has_piped then
    n = n + 1
    args[n] = piped
  end
  return fn(ctx, where, unpack(args, 1, n))
end

eval_pipe = function(ctx, pipe, where)
  local v, has = nil, false
  for _, cmd in ipairs(pipe) do
    v = eval_cmd(ctx, cmd, where, v, has)
    has = true
  end
  return v
end

exec = function(nodes, ctx, out)
  for _, node in ipairs(nodes) do
    if node.text then
      out[#out + 1] = node.text
    elseif node.kind == "out" then
      out[#out + 1] = to_str(eval_pipe(ctx, node.pipe, node.where), node.where)
    elseif node.kind == "if" then
      if truthy(eval_pipe(ctx, node.cond, node.where)) then
        exec(node.body, ctx, out)
      elseif node.orelse then
        exec(node.orelse, ctx, out)
      end
    elseif node.kind == "with" then
      local v = eval_pipe(ctx, node.cond, node.where)
      if truthy(v) then
        exec(node.body, { dot = v, root = ctx.root, defines = ctx.defines }, out)
      elseif node.orelse then
        exec(node.orelse, ctx, out)
      end
    elseif node.kind == "range" then
      local v = eval_pipe(ctx, node.cond, node.where)
      if truthy(v) then
        if type(v) ~= "table" then error(node.where .. ": range over a " .. type(v), 0) end
        local list = v
        if not yamldoc.is_seq(v) then
          list = {}
          for _, k in ipairs(sorted_keys(v)) do list[#list + 1] = v[k] end
        end
        for _, e in ipairs(list) do
          exec(node.body, { dot = e, root = ctx.root, defines = ctx.defines }, out)
        end
      elseif node.orelse then
        exec(node.orelse, ctx, out)
      end
    end
  end
end

---------------------------------------------------------------- API

-- Parses one template; its defines go into defines (name → body).
-- Returns the parsed body.
function _M.parse(src, name, defines)
  local items = lex(src, name)
  local nodes, i = parse_block(items, 1, name, defines)
  if i <= #items then
    error(name .. ":" .. items[i].line .. ": unexpected {{ " .. items[i].action .. " }}", 0)
  end
  return nodes
end

-- Renders a parsed body with data as both the dot and $.
function _M.execute(nodes, data, defines)
  local out = {}
  exec(nodes, { dot = data, root = data, defines = defines or {} }, out)
  return tbl_concat(out)
end

-- Renders template text with data (a convenience for one file).
function _M.render(src, data, name)
  local defines = {}
  local nodes = _M.parse(src, name or "template", defines)
  return _M.execute(nodes, data, defines)
end

-- Deep merge as Helm merges -f/--set values: maps merged key by key,
-- anything else (lists included) replaced. Returns a new table.
function _M.merge(base, over)
  if type(base) ~= "table" or type(over) ~= "table" or yamldoc.is_seq(base) or yamldoc.is_seq(over) then
    if over == nil then return base end
    return over
  end
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over) do out[k] = _M.merge(base[k], v) end
  return out
end

local function read(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function list_templates(dir)
  local p = io_popen("ls -1 '" .. dir .. "/templates'")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  tbl_sort(names)
  return names
end

-- Renders the chart at dir as `helm template <release.Name> dir -f override`.
function _M.render_chart(dir, override, release)
  local chart = yamldoc.load(assert(read(dir .. "/Chart.yaml"), dir .. "/Chart.yaml"), "Chart.yaml")
  local values = yamldoc.load(assert(read(dir .. "/values.yaml"), dir .. "/values.yaml"), "values.yaml") or {}
  values = _M.merge(values, override or {})
  release = release or {}
  local data = {
    Values = values,
    Chart = { Name = chart.name, Version = chart.version, AppVersion = chart.appVersion },
    Release = { Name = release.Name or "release-name", Namespace = release.Namespace or "default",
                Service = "Helm" },
    Files = {
      Get = function(path)
        local s = read(dir .. "/" .. path)
        if not s then error(".Files.Get: no file " .. dir .. "/" .. path, 0) end
        return s
      end,
    },
  }
  local defines, parsed = {}, {}
  for _, name in ipairs(list_templates(dir)) do
    local src = assert(read(dir .. "/templates/" .. name))
    parsed[#parsed + 1] = { name = name, nodes = _M.parse(src, "templates/" .. name, defines) }
  end
  local docs, per = {}, {}
  for _, t in ipairs(parsed) do
    if not str_match(t.name, "^_") and str_match(t.name, "%.yaml$") then
      local text = _M.execute(t.nodes, data, defines)
      per[#per + 1] = { name = t.name, text = text }
      if str_find(text, "%S") then
        docs[#docs + 1] = "---\n# Source: " .. chart.name .. "/templates/" .. t.name .. "\n" .. text .. "\n"
      end
    end
  end
  return tbl_concat(docs), per
end

return _M
