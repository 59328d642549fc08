-- OpenIM's log.yml (issue 14): with it in the config folder, impulse logs as
-- openim-push does, so the operator's log pipeline keeps parsing: the file
-- <storageLocation>/openim-service-log.<day>, stdout when isStdout, OpenIM's
-- JSON (keys in its order, levels upper case, msg padded to 50) or its
-- console line when isJson is false, the level from remainLogLevel, and the
-- operationID on every line about a message. Each case runs OpenIM's
-- v3.8.3-patch.15 folder with only log.yml changed (and the addresses
-- through IMENV_, as spec 33).
local h = require "spec.helpers"
local cjson = require "cjson.safe"

local FOLDER = h.root .. "/spec/fixtures/openim-config/v3.8.3-patch.15"
local ORDER = { "level", "time", "logger", "caller", "msg", "PID", "version" }
local LEVELS = { DEBUG = true, INFO = true, WARN = true, ERROR = true }

local function lines_of(text)
  local out = {}
  for l in (text or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- The top-level keys of a JSON object line, in the order written (the
-- values of these lines are strings, numbers, lists and objects whose own
-- keys are skipped by depth).
local function keys_in_order(line)
  local keys, depth, i, n = {}, 0, 1, #line
  while i <= n do
    local c = line:sub(i, i)
    if c == '"' then
      local j = i + 1
      while j <= n do
        local d = line:sub(j, j)
        if d == "\\" then j = j + 1 elseif d == '"' then break end
        j = j + 1
      end
      if depth == 1 and line:sub(j + 1, j + 1) == ":" then keys[#keys + 1] = line:sub(i + 1, j - 1) end
      i = j + 1
    else
      if c == "{" or c == "[" then depth = depth + 1 elseif c == "}" or c == "]" then depth = depth - 1 end
      i = i + 1
    end
  end
  return keys
end

describe("OpenIM's log.yml #engine", function()
  local env, started = nil, {}

  lazy_setup(function()
    env = {}
    env.redis = h.start_redis()
    env.etcd = h.start_etcd()
    env.kafka = h.start_kafka()
    env.services = h.start_services(env.etcd)
    env.gateways = { h.start_gateway(env.etcd) }
    env.producer = h.kafka.producer { bootstrap = env.kafka.bootstrap }
    h.set_online(env, { ann = { 2 }, cat = { 2 }, dan = { 2 } }, env.gateways[1])
    h.redis_cli(env.redis, "CONFIG", "SET", "requirepass", "openIM123")
  end)

  lazy_teardown(function() h.stop_env(env) end)

  -- Starts impulse on a copy of OpenIM's folder whose log.yml is log_yml
  -- (and scripts from the folder `scripts`, if given); returns the process
  -- and its log folder.
  local function start(log_yml, scripts)
    local admin = h.free_port()
    local dir = h.tmpdir() .. "/config-" .. admin
    local logdir = h.tmpdir() .. "/logs-" .. admin
    assert(select(2, h.run("cp -r " .. h.shell_quote(FOLDER) .. " " .. h.shell_quote(dir))))
    h.write_file(dir .. "/log.yml", log_yml:gsub("LOGDIR", logdir))
    local vars = {
      IMENV_KAFKA_ADDRESS = env.kafka.bootstrap,
      IMENV_REDIS_ADDRESS = env.redis.addr,
      IMENV_DISCOVERY_ETCD_ADDRESS = env.etcd.addr,
      IMENV_IMPULSE_ADMIN = "127.0.0.1:" .. admin,
      IMENV_IMPULSE_CRASHJOURNAL = h.tmpdir() .. "/crash-journal-" .. admin,
      IMENV_IMPULSE_DEADLETTERSPOOL = h.tmpdir() .. "/spool-" .. admin,
      -- a partition the previous case never committed: read from its start
      IMENV_IMPULSE_AUTOOFFSETRESET = "earliest",
      IMENV_IMPULSE_SCRIPTS = scripts,
    }
    local parts = {}
    for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. h.shell_quote(v) end
    local imp = h.spawn("impulse", "env " .. table.concat(parts, " ") .. " " .. h.shell_quote(h.bin)
      .. " -c " .. h.shell_quote(dir) .. " -i 0")
    imp.admin = "http://127.0.0.1:" .. admin
    h.wait_ready(imp, 40000)
    started[#started + 1] = imp
    return imp, logdir
  end

  local function today_file(logdir)
    -- the day the file was opened, or (across midnight) the day after
    for _, day in ipairs { os.date("%Y-%m-%d"), os.date("%Y-%m-%d", os.time() - 3600) } do
      local text = h.read_file(logdir .. "/openim-service-log." .. day)
      if text then return text, day end
    end
    error("no openim-service-log.<today> in " .. logdir .. ": " .. h.run("ls -la " .. logdir), 2)
  end

  -- pushes one message to ann (online) and waits for it at the gateway
  local function push_one(recv)
    local m = h.push_msg { sendID = "bob", recvID = recv }
    local opid = h.produce(env, m)
    h.wait_until(function()
      return h.http_json("GET", env.gateways[1].control .. "/seen")[m.clientMsgID]
    end, 30000, "the push at the gateway")
    return m, opid
  end

  after_each(function()
    for _, p in ipairs(started) do h.stop(p) end
    started = {}
  end)

  it("isJson: OpenIM's JSON lines, keys in its order, in today's file and on stdout", function()
    local imp, logdir = start(table.concat({
      "storageLocation: LOGDIR", "rotationTime: 24", "remainRotationCount: 2", "remainLogLevel: 4",
      "isStdout: true", "isJson: true", "isSimplify: true" }, "\n") .. "\n")
    local m, opid = push_one("ann")
    -- the route line of the message reaches the file
    h.wait_until(function()
      return today_file(logdir):find(m.clientMsgID, 1, true)
    end, 10000, "the message's line in the file")
    h.stop(imp) -- every line written, to both
    local file_lines = lines_of(today_file(logdir))
    assert.is_true(#file_lines >= 3)
    local about, seen_levels = 0, {}
    for _, l in ipairs(file_lines) do
      local j = cjson.decode(l)
      assert.is_table(j, "not JSON: " .. l)
      local keys = keys_in_order(l)
      for i, k in ipairs(ORDER) do assert.equal(k, keys[i], l) end
      assert.is_true(LEVELS[j.level] ~= nil, "level " .. tostring(j.level))
      seen_levels[j.level] = true
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d$", j.time)
      assert.equal("openim-push", j.logger)
      assert.matches("^[%w_.-]+/[%w_.-]+:%d+$", j.caller)
      assert.is_true(#j.msg >= 50, "msg not padded: " .. l)
      assert.equal(imp.pid, j.PID)
      assert.matches("^v3%.8%.", j.version)
      if l:find(m.clientMsgID, 1, true) then
        about = about + 1
        assert.equal(opid, j.operationID, l)
        -- from patch.5 every toPush record runs as the admin, so OpenIM's
        -- lines carry it (the folder's share.yml: imAdminUserID imAdmin)
        assert.equal("imAdmin", j.opUserID, l)
        assert.equal("operationID", keys[8], l) -- the context right after version
        assert.equal("opUserID", keys[9], l)
        if j.msg:match("^push +$") then -- the route line: its caller in the engine
          assert.matches("^push/fanout%.c:%d+$", j.caller)
        end
      end
      if j.error and (j.level == "WARN" or j.level == "ERROR") then
        assert.equal("error", keys[#keys], l) -- last, as OpenIM's appendError
      end
    end
    assert.is_true(about >= 1, "no line about " .. m.clientMsgID)
    assert.is_true(seen_levels.INFO, "no INFO line")
    assert.is_nil(seen_levels.DEBUG) -- remainLogLevel 4
    -- stdout (with stderr in imp.log) has the same lines, and no others
    local in_file = {}
    for _, l in ipairs(file_lines) do in_file[l] = true end
    local out = lines_of(h.read_file(imp.log))
    for _, l in ipairs(out) do assert.is_true(in_file[l], "on stdout, not in the file: " .. l) end
    assert.equal(#file_lines, #out)
  end)

  it("isJson false: OpenIM's console lines in the file, none on stdout; a script's line names it", function()
    -- the default policy, whose route() logs a line first (line 23)
    local scripts = h.tmpdir() .. "/scripts-log"
    assert(select(2, h.run("cp -r " .. h.shell_quote(h.root .. "/scripts") .. " " .. h.shell_quote(scripts))))
    local src = h.read_file(scripts .. "/push.lua")
    src = src:gsub("function _M%.route%(msg, ctx%)\n", "%0  ctx.log.info(\"routed by %%s\", msg.clientMsgID)\n", 1)
    h.write_file(scripts .. "/push.lua", src)
    assert.matches('function _M.route(msg, ctx)\n  ctx.log.info("routed by', src, 1, true)
    local imp, logdir = start(table.concat({
      "storageLocation: LOGDIR", "rotationTime: 24", "remainRotationCount: 2", "remainLogLevel: 6",
      "isStdout: false", "isJson: false" }, "\n") .. "\n", scripts)
    local m, opid = push_one("cat")
    local text = h.wait_until(function()
      local t = today_file(logdir)
      return t:find(m.clientMsgID, 1, true) and t
    end, 10000, "the message's line in the file")
    local about, script_line = 0, false
    for _, l in ipairs(lines_of(text)) do
      local f = {}
      for part in (l .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = part end
      assert.is_true(#f >= 7, "not tab-separated: " .. l)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d$", f[1])
      assert.is_true(LEVELS[f[2]] ~= nil, "level token " .. f[2])
      assert.matches("^%[PID:%d+%] *$", f[3])
      assert.matches("^openim%-push *$", f[4])
      assert.matches("^%[v3%.8%.[^%]]+%] *$", f[5])
      assert.matches("^%[[%w_.-]+/[%w_.-]+:%d+%] *$", f[6])
      assert.is_true(#f[7] >= 50, "msg not padded: " .. l)
      if l:find(m.clientMsgID, 1, true) then
        about = about + 1
        local fields = cjson.decode(f[8])
        assert.is_table(fields, l)
        assert.equal(opid, fields.operationID)
        if f[7]:match("^routed by ") then
          script_line = true
          assert.matches("^%[scripts%-log/push%.lua:23%] *$", f[6])
        end
      end
    end
    assert.is_true(about >= 2)
    assert.is_true(script_line, "no line from the script")
    assert.is_nil(h.read_file(imp.log):find(m.clientMsgID, 1, true), "on stdout with isStdout false")
  end)

  it("remainLogLevel 3: warnings and errors only", function()
    local imp, logdir = start(table.concat({
      "storageLocation: LOGDIR", "rotationTime: 24", "remainRotationCount: 2", "remainLogLevel: 3",
      "isStdout: false", "isJson: true" }, "\n") .. "\n")
    push_one("dan")
    h.stop(imp) -- every line written
    local file_lines = lines_of(today_file(logdir))
    -- geTui without keys (the folder's openim-push.yml): an error at start
    assert.is_true(#file_lines >= 1, "no line at all: the filter cannot be told from no file")
    for _, l in ipairs(file_lines) do
      local j = assert(cjson.decode(l))
      assert.is_true(j.level == "WARN" or j.level == "ERROR", l)
    end
  end)
end)
