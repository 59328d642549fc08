-- spec.helpers: starts and stops the real servers spec/03-engine and the
-- demo run against, on free loopback ports, and waits for each by polling
-- (never by fixed sleeps):
--
--   redis-server, etcd, impulse-kafka-mock (librdkafka's mock cluster),
--   the OpenIM stand-in (examples/openim-standin: msggateway nodes and the
--   user/group/conversation/msg services, on Node's grpc-js), and impulse.
--
-- Every process started here is remembered and stopped by stop_all().
-- Paths: IMPULSE_BIN and IMPULSE_KAFKA_MOCK (set by ctest) or build/.
-- IMPULSE_NO_JOURNAL=1 leaves impulse.crashJournal out of the configs, to
-- run a spec against a build older than that key (side-by-side checks).
local ffi = require "ffi"
local cjson = require "cjson.safe"
local kafka = require "spec.helpers.kafka"
local pb = require "spec.helpers.pb"

local C = ffi.C
local format = string.format
local concat = table.concat
local insert = table.insert
local tostring = tostring
local error = error
local pairs, ipairs = pairs, ipairs
local io_open, io_popen = io.open, io.popen
local os_getenv, os_remove, os_execute = os.getenv, os.remove, os.execute

local _M = {}

local function cdef(decl)
  pcall(ffi.cdef, decl)
end
cdef [[
  typedef unsigned int socklen_t;
  typedef unsigned short sa_family_t;
  struct imp_sockaddr_in { sa_family_t sin_family; uint16_t sin_port; uint32_t sin_addr; char pad[8]; };
  int socket(int domain, int type, int protocol);
  int bind(int fd, const void *addr, socklen_t len);
  int getsockname(int fd, void *addr, socklen_t *len);
  int close(int fd);
  int kill(int pid, int sig);
  int poll(void *fds, unsigned long nfds, int timeout);
  int getpid(void);
]]

_M.SIGKILL, _M.SIGTERM, _M.SIGSTOP, _M.SIGCONT = 9, 15, 19, 18

-- absolute: config files written elsewhere name paths under it, and a
-- relative path in a config resolves against the config's folder
_M.root = os_getenv("IMPULSE_ROOT") or "."
if _M.root:sub(1, 1) ~= "/" then
  local pwd = io.popen("pwd"):read("*l")
  _M.root = _M.root == "." and pwd or (pwd .. "/" .. _M.root)
end
_M.bin = os_getenv("IMPULSE_BIN") or (_M.root .. "/build/impulse")
_M.kafka_mock_bin = os_getenv("IMPULSE_KAFKA_MOCK") or (_M.root .. "/build/impulse-kafka-mock")
_M.standin_dir = _M.root .. "/examples/openim-standin"
_M.pb = pb
_M.kafka = kafka
_M.now_ms = kafka.now_ms

-- Sleeps ms milliseconds (used only inside polling loops).
local function sleep_ms(ms)
  C.poll(nil, 0, ms)
end
_M.sleep_ms = sleep_ms

-- Polls fn() every 20-100 ms until it returns a truthy value (returned), or
-- raises "timed out waiting for <what>" after timeout_ms.
function _M.wait_until(fn, timeout_ms, what)
  local deadline = kafka.now_ms() + (timeout_ms or 10000)
  local pause = 20
  while true do
    if _M.poll_hook then _M.poll_hook() end -- the demo: a signal or a closed stdout stops it
    local v = fn()
    if v then return v end
    if kafka.now_ms() > deadline then
      error("timed out after " .. (timeout_ms or 10000) .. " ms waiting for " .. (what or "a condition"), 2)
    end
    sleep_ms(pause)
    if pause < 100 then pause = pause + 20 end
  end
end

-- A free TCP port on 127.0.0.1 (bind to port 0, read it back, close).
function _M.free_port()
  local fd = C.socket(2, 1, 0)
  assert(fd >= 0, "socket() failed")
  local sa = ffi.new("struct imp_sockaddr_in")
  sa.sin_family = 2
  sa.sin_addr = 0x0100007f -- 127.0.0.1 in network order on little endian
  assert(C.bind(fd, sa, ffi.sizeof(sa)) == 0, "bind() failed")
  local len = ffi.new("socklen_t[1]", ffi.sizeof(sa))
  C.getsockname(fd, sa, len)
  C.close(fd)
  local p = sa.sin_port
  return math.floor(p / 256) + (p % 256) * 256
end

local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
_M.read_file = read_file

local function write_file(path, data)
  local f = assert(io_open(path, "wb"))
  f:write(data)
  f:close()
end
_M.write_file = write_file

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.shell_quote = shell_quote

-- Runs a shell command, returns its stdout (and the exit status: true/false).
local function run(cmd)
  local p = io_popen(cmd, "r")
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end
_M.run = run

-- A fresh temporary folder for this test run.
local tmp_root
function _M.tmpdir()
  if not tmp_root then
    tmp_root = run("mktemp -d /tmp/impulse-spec-XXXXXX"):gsub("%s+$", "")
  end
  return tmp_root
end

local procs = {}
_M.procs = procs
local spawned = 0

-- Starts cmd in the background with stdout and stderr in logfile; returns
-- a process record {name, pid, log}.
function _M.spawn(name, cmd, logfile)
  spawned = spawned + 1
  logfile = logfile or format("%s/%s-%d.log", _M.tmpdir(), name, spawned)
  -- new_session (the demo sets it): the process gets its own session, so a
  -- Ctrl-C at the terminal reaches only the driver, which stops it in order
  local out = run(format("exec 3>&-; %s%s >>%s 2>&1 </dev/null & echo $!", _M.new_session and "setsid " or "",
    cmd, shell_quote(logfile)))
  local pid = tonumber(out:match("(%d+)"))
  assert(pid, "could not start " .. name)
  local p = { name = name, pid = pid, log = logfile, cmd = cmd }
  procs[#procs + 1] = p
  return p
end

function _M.alive(p)
  -- kill(pid, 0) succeeds for a zombie too: ask ps for the state
  if C.kill(p.pid, 0) ~= 0 then return false end
  local st = run("ps -o stat= -p " .. p.pid):gsub("%s+", "")
  if st == "" then return false end
  if not st:match("^Z") then return true end
  -- a zombie leader whose other threads are still exiting (a busy thread
  -- killed by _exit waits for the CPU) still holds its files and locks:
  -- alive until it is the only thread left
  local n = tonumber((run("ls /proc/" .. p.pid .. "/task 2>/dev/null | wc -l"):gsub("%s+", "")))
  return (n or 0) > 1
end

function _M.signal(p, sig)
  return C.kill(p.pid, sig) == 0
end

-- Stops p: SIGTERM, then SIGKILL if it is still alive after timeout_ms.
function _M.stop(p, timeout_ms)
  if not p or p.stopped then return end
  C.kill(p.pid, _M.SIGCONT)
  C.kill(p.pid, _M.SIGTERM)
  local ok = pcall(_M.wait_until, function() return not _M.alive(p) end, timeout_ms or 10000)
  if not ok then C.kill(p.pid, _M.SIGKILL) end
  p.stopped = true
end

function _M.stop_all()
  for i = #procs, 1, -1 do
    _M.stop(procs[i], 5000)
    if procs[i].data_dir then os_execute("rm -rf " .. shell_quote(procs[i].data_dir)) end
    procs[i] = nil
  end
end

-- Waits for a process's exit and returns its status through `wait` in a
-- shell is impossible for a grandchild: instead we poll until it is gone.
function _M.wait_exit(p, timeout_ms)
  _M.wait_until(function() return not _M.alive(p) end, timeout_ms or 35000, p.name .. " to exit")
  p.stopped = true
end

-- HTTP through curl: returns status (number) and body.
function _M.http(method, url, body)
  local cmd = format("curl -s -m 5 -o - -w '\\n%%{http_code}' -X %s", method)
  if body then
    local f = _M.tmpdir() .. "/http-body-" .. C.getpid() .. ".json"
    write_file(f, type(body) == "table" and cjson.encode(body) or body)
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary @" .. shell_quote(f)
  end
  local out = run(cmd .. " " .. shell_quote(url))
  local text, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code) or 0, text or out
end

function _M.http_json(method, url, body)
  local status, text = _M.http(method, url, body)
  if status < 200 or status > 299 then
    error(format("%s %s: HTTP %d %s", method, url, status, text), 2)
  end
  return cjson.decode(text)
end

-- ---------------------------------------------------------------- servers

-- auth = { user = ..., pass = ... }: an ACL user, and no access without it.
function _M.start_redis(port, auth)
  port = port or _M.free_port()
  local dir = _M.tmpdir()
  local acl = auth and format(" --user default off --user %s on %s '~*' '&*' '+@all'", shell_quote(auth.user),
    shell_quote(">" .. auth.pass)) or ""
  local p = _M.spawn("redis-" .. port, format(
    "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s%s",
    port, shell_quote(dir), acl))
  p.port = port
  p.addr = "127.0.0.1:" .. port
  p.auth = auth
  _M.wait_until(function()
    return _M.redis_cli(p, "ping"):match("PONG")
  end, 10000, "redis on port " .. port)
  return p
end

-- redis-cli against redis (as its ACL user, if it has one); db: a number or nil.
function _M.redis_cli(redis, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = shell_quote(a) end
  local auth = redis.auth and format("--user %s --pass %s --no-auth-warning ", shell_quote(redis.auth.user),
    shell_quote(redis.auth.pass)) or ""
  local db = redis.db and format("-n %d ", redis.db) or ""
  return run(format("redis-cli -p %d %s%s%s 2>/dev/null", redis.port, auth, db, concat(args, " ")))
end

function _M.publish(redis, channel, payload)
  return tonumber(_M.redis_cli(redis, "PUBLISH", channel, payload):match("(%d+)"))
end

function _M.start_etcd()
  local port, peer = _M.free_port(), _M.free_port()
  local dir = run("mktemp -d " .. _M.tmpdir() .. "/etcd-XXXXXX"):gsub("%s+$", "")
  local url = "http://127.0.0.1:" .. port
  local p = _M.spawn("etcd-" .. port, format(
    "etcd --name e%d --data-dir %s --listen-client-urls %s --advertise-client-urls %s "
      .. "--listen-peer-urls http://127.0.0.1:%d --initial-advertise-peer-urls http://127.0.0.1:%d "
      .. "--initial-cluster e%d=http://127.0.0.1:%d --log-level error",
    port, dir, url, url, peer, peer, port, peer))
  p.port, p.url, p.addr = port, url, "127.0.0.1:" .. port
  p.data_dir = dir -- removed by stop_all (tens of MB each)
  _M.wait_until(function()
    local st, body = _M.http("GET", url .. "/health")
    return st == 200 and body:match('"health":"true"')
  end, 15000, "etcd on port " .. port)
  return p
end

-- Keys under prefix in etcd: { [key] = value }.
function _M.etcd_keys(etcd, prefix)
  local out = run(format("ETCDCTL_API=3 etcdctl --endpoints=%s get --prefix %s", etcd.url, shell_quote(prefix)))
  local keys, key = {}, nil
  for line in out:gmatch("[^\n]+") do
    if key then keys[key] = line; key = nil else key = line end
  end
  return keys
end

function _M.start_kafka(opts)
  opts = opts or {}
  local info = _M.tmpdir() .. "/kafka-" .. _M.free_port() .. ".json"
  local p = _M.spawn("kafka-mock", format("%s --partitions %d --info %s",
    shell_quote(_M.kafka_mock_bin), opts.partitions or 8, shell_quote(info)))
  local data = _M.wait_until(function()
    local s = read_file(info)
    return s and cjson.decode(s)
  end, 10000, "the Kafka mock cluster")
  p.bootstrap = data.bootstrap
  p.control = data.control -- the control port (spec.helpers.faults.kafka_ctl)
  return p
end

-- Installs the stand-in's node modules once per run (npm ci).
local npm_done = false
local function ensure_npm()
  if npm_done then return end
  local dir = shell_quote(_M.standin_dir)
  local ok = os_execute(format("test -d %s/node_modules/@grpc/grpc-js || "
    .. "(cd %s && npm ci --no-audit --no-fund --loglevel=error >/dev/null)", dir, dir))
  assert(ok == 0 or ok == true, "npm ci in examples/openim-standin failed")
  npm_done = true
end

local function start_standin(kind, etcd, extra)
  ensure_npm()
  local info = format("%s/%s-%d.json", _M.tmpdir(), kind, _M.free_port())
  -- etcd nil: registered nowhere (Kubernetes discovery finds it instead)
  local p = _M.spawn(kind, format("node %s/standin.js %s %s --root openim --info %s %s",
    shell_quote(_M.standin_dir), kind, etcd and ("--etcd " .. etcd.url) or "--no-etcd",
    shell_quote(info), extra or ""))
  local data = _M.wait_until(function()
    local s = read_file(info)
    return s and cjson.decode(s)
  end, 20000, "the OpenIM stand-in (" .. kind .. ")")
  p.grpc, p.control = data.grpc, "http://" .. data.control
  p.key = data.key
  return p
end

-- A msggateway node registered in etcd as OpenIM v3.8.3 does.
function _M.start_gateway(etcd, extra)
  return start_standin("gateway", etcd, extra)
end

-- The user, group, conversation and msg services.
function _M.start_services(etcd, extra)
  return start_standin("services", etcd, extra)
end

-- Writes an impulse config for these servers; overrides go into impulse:.
function _M.impulse_config(env, opts)
  opts = opts or {}
  local admin = opts.admin_port or _M.free_port()
  -- a default of the impulse: section, unless opts.impulse sets that key
  local over = opts.impulse or {}
  local function default(key, value)
    return over[key] == nil and ("  " .. key .. ": " .. value) or ""
  end
  local lines = {
    "kafka:",
    "  address: [" .. env.kafka.bootstrap .. "]",
    "redis:",
    "  address: [" .. env.redis.addr .. "]",
    env.redis.auth and ("  username: " .. env.redis.auth.user) or "",
    "  password: '" .. (env.redis.auth and env.redis.auth.pass or "") .. "'",
    opts.redis_db and ("  db: " .. opts.redis_db) or "",
    "discovery:",
    "  enable: " .. (opts.discovery_enable or "etcd"),
    "  etcd:",
    "    rootDirectory: openim",
    env.etcd and ("    address: [" .. env.etcd.addr .. "]") or "",
    opts.etcd_user and ("    username: " .. opts.etcd_user) or "",
    opts.etcd_password and ("    password: " .. opts.etcd_password) or "",
    opts.discovery_yaml or "", -- more discovery keys (indented by 2)
    "openim-push:",
    "  fullUserCache: " .. tostring(opts.full_user_cache ~= false),
    opts.provider and ("  enable: " .. opts.provider) or "  enable: none",
    opts.push_yaml or "", -- more openim-push keys (indented by 2)
    "  rpc:",
    "    listenIP: 127.0.0.1",
    "    registerIP: 127.0.0.1",
    opts.rpc_yaml or "", -- more openim-push rpc keys (indented by 4)
    "impulse:",
    "  workers: " .. (opts.workers or 2),
    -- scripts = false: the binary's default (an installed one's share/impulse/scripts)
    opts.scripts ~= false and ("  scripts: " .. (opts.scripts or (_M.root .. "/scripts"))) or "",
    default("admin", "127.0.0.1:" .. admin),
    default("autoOffsetReset", "earliest"),
    default("sessionTimeoutMs", 6000),
    default("heartbeatIntervalMs", 1000),
    default("commitIntervalMs", 200),
    "  gatewayTimeoutMs: " .. (opts.gateway_timeout_ms or 2000),
    "  rpcTimeoutMs: " .. (opts.rpc_timeout_ms or 2000),
    "  drainTimeoutMs: " .. (opts.drain_timeout_ms or 10000),
    "  routeLogUsers: " .. (opts.route_log_users or 100),
    "  logLevel: " .. (opts.log_level or "info"),
  }
  for k, v in pairs(opts.impulse or {}) do
    lines[#lines + 1] = "  " .. k .. ": " .. tostring(v)
  end
  if not (opts.impulse or {}).crashJournal and not os_getenv("IMPULSE_NO_JOURNAL") then -- own file per start
    lines[#lines + 1] = format("  crashJournal: %s/crash-journal-%d", _M.tmpdir(), admin)
  end
  if opts.impulse_yaml then lines[#lines + 1] = opts.impulse_yaml end -- nested impulse keys
  if opts.yaml then lines[#lines + 1] = opts.yaml end -- more top-level sections
  local path = format("%s/impulse-%d.yml", _M.tmpdir(), admin)
  write_file(path, concat(lines, "\n") .. "\n")
  return path, admin
end

-- Starts impulse and, unless opts.no_wait, waits for /readyz.
function _M.start_impulse(env, opts)
  opts = opts or {}
  local cfg, admin = _M.impulse_config(env, opts)
  local p = _M.spawn("impulse", shell_quote(_M.bin) .. " run " .. (opts.run_args or "") .. " -c " .. shell_quote(cfg),
    opts.log)
  p.admin = "http://127.0.0.1:" .. admin
  p.config = cfg
  if not opts.no_wait then _M.wait_ready(p, opts.ready_timeout_ms) end
  return p
end

function _M.wait_ready(imp, timeout_ms)
  _M.wait_until(function()
    if not _M.alive(imp) then
      error("impulse exited during start-up; log:\n" .. (read_file(imp.log) or ""), 0)
    end
    return _M.http("GET", imp.admin .. "/readyz") == 200
  end, timeout_ms or 30000, "impulse /readyz")
end

-- Log lines of impulse as decoded JSON objects (optionally only those whose
-- msg starts with the given text).
function _M.log_lines(p, msg)
  local out = {}
  for line in (read_file(p.log) or ""):gmatch("[^\n]+") do
    local j = cjson.decode(line)
    if j and (not msg or (type(j.msg) == "string" and j.msg:sub(1, #msg) == msg)) then
      out[#out + 1] = j
    end
  end
  return out
end

-- Every record of a dead-letter topic (default toPush.dlq), read from the
-- start; and one header's value of such a record.
function _M.dead_letters(env, topic)
  return kafka.read_all { bootstrap = env.kafka.bootstrap, topic = topic or "toPush.dlq", timeout_ms = 10000 }
end

function _M.header(rec, name)
  for _, hd in ipairs(rec.headers) do if hd[1] == name then return hd[2] end end
end

-- openim-push's jpush keys pointing at the fake provider at base.
function _M.jpush_yaml(base)
  return concat({ "  jpush:", "    appKey: jkey", "    masterSecret: jsecret", "    pushURL: " .. base .. "/v3/push" },
    "\n")
end

-- A metric's value from /metrics (labels as written, e.g. 'result="ok"').
function _M.metric(imp, name, labels)
  local _, body = _M.http("GET", imp.admin .. "/metrics")
  local pat = labels and (name .. "{" .. labels .. "} ") or (name .. " ")
  for line in body:gmatch("[^\n]+") do
    if line:sub(1, #pat) == pat then return tonumber(line:sub(#pat + 1)) end
  end
  return 0
end

-- impulse_messages_total of topic by result: { ok = n, route_failed = n, ... }
function _M.results(imp, topic)
  local _, body = _M.http("GET", imp.admin .. "/metrics")
  local out = {}
  for result, n in body:gmatch('impulse_messages_total{topic="' .. (topic or "toPush"):gsub("%p", "%%%0")
      .. '",result="([%w_]+)"} (%d+)') do
    out[result] = tonumber(n)
  end
  return out
end

-- Waits until `want` messages of topic ended ok; fails at once, with one
-- line naming the outcome, when any ends otherwise (beyond `bad_before`,
-- the non-ok count to ignore) instead of waiting for a count that will not
-- come (benchmarks).
function _M.wait_ok(imp, want, timeout_ms, what, topic, bad_before)
  return _M.wait_until(function()
    local r, bad = _M.results(imp, topic), {}
    local nbad = 0
    for result, n in pairs(r) do
      if result ~= "ok" and n > 0 then
        nbad = nbad + n
        bad[#bad + 1] = result .. " " .. n
      end
    end
    if nbad > (bad_before or 0) then
      table.sort(bad)
      error(format("%s: %d message(s) ended other than ok (%s); impulse's log: %s", what or "messages",
        nbad - (bad_before or 0), concat(bad, ", "), imp.log), 0)
    end
    return (r.ok or 0) >= want
  end, timeout_ms, what)
end

-- Starts the whole OpenIM side: redis, etcd, kafka and the stand-ins.
function _M.start_env(opts)
  opts = opts or {}
  local env = {}
  env.redis = _M.start_redis(nil, opts.redis_auth)
  env.etcd = _M.start_etcd()
  env.kafka = _M.start_kafka()
  env.services = _M.start_services(env.etcd, opts.services_args)
  env.gateways = {}
  for i = 1, opts.gateways or 2 do
    env.gateways[i] = _M.start_gateway(env.etcd)
  end
  env.producer = kafka.producer { bootstrap = env.kafka.bootstrap }
  return env
end

function _M.stop_env(env)
  if env and env.producer then pcall(env.producer.close, env.producer) end
  _M.stop_all()
end

-- ------------------------------------------------------------ providers

-- A throw-away certificate authority and a server certificate for
-- 127.0.0.1 it signed, made with the openssl CLI (once per run); also an
-- RSA key (FCM's service account) and a P-256 key (APNs). Paths.
local pki
function _M.test_pki()
  if pki then return pki end
  local d = _M.tmpdir() .. "/pki"
  local q = shell_quote(d)
  local cmd = table.concat({
    "set -e", "mkdir -p " .. q, "cd " .. q,
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      .. "-subj /CN=impulse-test-ca 2>/dev/null",
    "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null",
    "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
      .. "-extfile san.ext 2>/dev/null",
    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out fcm.key 2>/dev/null",
    "openssl pkey -in fcm.key -pubout -out fcm.pub 2>/dev/null",
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apns.p8 2>/dev/null",
    "openssl pkey -in apns.p8 -pubout -out apns.pub 2>/dev/null",
  }, "\n")
  local ok = os_execute(cmd)
  assert(ok == 0 or ok == true, "making the test PKI failed")
  pki = { dir = d, ca = d .. "/ca.pem", cert = d .. "/server.pem", key = d .. "/server.key",
          fcm_key = d .. "/fcm.key", fcm_pub = d .. "/fcm.pub", apns_key = d .. "/apns.p8",
          apns_pub = d .. "/apns.pub" }
  return pki
end

-- The fake providers (examples/openim-standin/providers.js) over HTTPS
-- with HTTP/2, their certificate signed by the test CA. p.base is
-- "https://127.0.0.1:PORT", p.control the control API.
function _M.start_providers()
  ensure_npm()
  local k = _M.test_pki()
  local info = format("%s/providers-%d.json", _M.tmpdir(), _M.free_port())
  local p = _M.spawn("providers", format("node %s/providers.js --info %s --cert %s --key %s --quiet",
    shell_quote(_M.standin_dir), shell_quote(info), shell_quote(k.cert), shell_quote(k.key)))
  local data = _M.wait_until(function()
    local s = read_file(info)
    return s and cjson.decode(s)
  end, 20000, "the fake providers")
  p.base = "https://" .. data.https
  p.control = "http://" .. data.control
  return p
end

-- A service account (project proj1, the test PKI's RSA key) for the fake
-- FCM p (start_providers), which is told to verify its tokens. Returns the
-- account file's path, for openim-push's fcm.filePath.
function _M.fake_fcm_account(p, name)
  local k = _M.test_pki()
  local sa = format("%s/%s-fcm-account.json", _M.tmpdir(), name or "fcm")
  write_file(sa, cjson.encode {
    type = "service_account", project_id = "proj1", client_email = "impulse@proj1.iam.gserviceaccount.com",
    private_key = read_file(k.fcm_key), token_uri = p.base .. "/token",
  })
  _M.http_json("POST", p.control .. "/config/fcm",
    { publicKeyPem = read_file(k.fcm_pub), tokenUri = p.base .. "/token" })
  return sa
end

-- A fake Kubernetes API server (examples/openim-standin/kube-apiserver.js)
-- over HTTPS with the test CA, and a service-account folder for impulse
-- (token, ca.crt, namespace). k.api is "127.0.0.1:PORT", k.control its
-- control API, k.sa the folder, k.env the environment impulse needs.
function _M.start_kube_apiserver(namespace)
  ensure_npm()
  local pk = _M.test_pki()
  local port = _M.free_port()
  local sa = format("%s/serviceaccount-%d", _M.tmpdir(), port)
  assert(os_execute("mkdir -p " .. shell_quote(sa)) ~= false)
  -- the token impulse sends (sa/token) and the one the server accepts
  -- (its own file): a test can make them differ
  write_file(sa .. "/token", "test-token-" .. port .. "\n")
  write_file(sa .. ".accepted", "test-token-" .. port .. "\n")
  write_file(sa .. "/ca.crt", read_file(pk.ca))
  write_file(sa .. "/namespace", (namespace or "openim") .. "\n")
  local info = format("%s/kube-apiserver-%d.json", _M.tmpdir(), port)
  local k = _M.spawn("kube-apiserver", format(
    "node %s/kube-apiserver.js --info %s --cert %s --key %s --token-file %s --bookmark-ms 1000",
    shell_quote(_M.standin_dir), shell_quote(info), shell_quote(pk.cert), shell_quote(pk.key),
    shell_quote(sa .. ".accepted")))
  local data = _M.wait_until(function()
    local s = read_file(info)
    return s and cjson.decode(s)
  end, 20000, "the fake Kubernetes API server")
  k.api, k.control, k.sa = data.https, "http://" .. data.control, sa
  local host, kport = data.https:match("^(.*):(%d+)$")
  k.env = format("KUBERNETES_SERVICE_HOST=%s KUBERNETES_SERVICE_PORT=%s", host, kport)
  k.namespace = namespace or "openim"
  return k
end

-- Sets Endpoints ns/name to one subset per {pod=, port=, ready=} (127.0.0.1,
-- port named "grpc" unless port_name says otherwise).
function _M.kube_endpoints(k, name, pods, port_name)
  local subsets = {}
  for _, p in ipairs(pods) do
    local a = { ip = "127.0.0.1", targetRef = p.pod and { kind = "Pod", name = p.pod, namespace = k.namespace } or nil }
    subsets[#subsets + 1] = {
      addresses = p.ready ~= false and { a } or nil,
      notReadyAddresses = p.ready == false and { a } or nil,
      ports = { { name = port_name or "grpc", port = p.port, protocol = "TCP" } },
    }
  end
  return _M.http_json("PUT", format("%s/endpoints/%s/%s", k.control, k.namespace, name), subsets)
end

-- ------------------------------------------------------------ OpenIM data

-- Marks users online: in the user service (for the initial load), on the
-- gateways that hold them, and, if redis is given, through online_change.
-- users = { u1 = {1, 5}, ... }; gateway = the stand-in that holds them.
function _M.set_online(env, users, gateway, publish)
  _M.http_json("POST", env.services.control .. "/online", users)
  if gateway then _M.http_json("POST", gateway.control .. "/conns", users) end
  if publish then
    for uid, platforms in pairs(users) do
      local parts = {}
      for i, p in ipairs(platforms) do parts[i] = tostring(p) end
      parts[#parts + 1] = uid
      _M.publish(env.redis, "online_change", concat(parts, ":"))
    end
  end
end

function _M.set_group(env, group_id, members)
  _M.http_json("POST", env.services.control .. "/groups", { [group_id] = members })
end

function _M.pushes(gateway)
  return _M.http_json("GET", gateway.control .. "/pushes")
end

function _M.reset_pushes(gateway)
  _M.http_json("POST", gateway.control .. "/reset", {})
end

local msg_counter = 0

-- Builds a PushMsgReq as msgtransfer writes it. fields override MsgData.
function _M.push_msg(fields)
  msg_counter = msg_counter + 1
  local m = {
    sendID = "sender",
    recvID = "receiver",
    clientMsgID = format("cmsg-%d-%d", C.getpid(), msg_counter),
    serverMsgID = format("smsg-%d-%d", C.getpid(), msg_counter),
    senderPlatformID = 1,
    sessionType = 1,
    msgFrom = 100,
    contentType = 101,
    content = '{"content":"hello"}',
    seq = msg_counter,
    sendTime = math.floor(os.time() * 1000),
    createTime = math.floor(os.time() * 1000),
    status = 1,
  }
  for k, v in pairs(fields or {}) do m[k] = v end
  return m
end

-- The Kafka key OpenIM uses: the groupID for groups, else sorted IDs.
function _M.key_of(m)
  if m.sessionType == 3 and m.groupID and m.groupID ~= "" then return m.groupID end
  local a, b = m.sendID or "", m.recvID or ""
  if a > b then a, b = b, a end
  return a .. "_" .. b
end

-- Produces msg (a MsgData table) to toPush with OpenIM's four headers
-- (opts.headers: other headers, as a list of {name, value}). Returns the
-- operationID used.
function _M.produce(env, msg, opts)
  opts = opts or {}
  local opid = opts.operationID or ("op-" .. msg.clientMsgID)
  local value = opts.raw or pb.encode("openim.push.PushMsgReq", { msgData = msg })
  env.producer:produce(opts.topic or "toPush", opts.key or _M.key_of(msg), value, opts.headers or {
    { "operationID", opid }, { "opUserID", msg.sendID or "" }, { "platform", "iOS" }, { "connID", "c1" },
  })
  if not opts.no_flush then env.producer:flush(10000) end
  return opid
end

-- push log lines of impulse indexed by clientMsgID.
function _M.routes(imp)
  local by = {}
  for _, l in ipairs(_M.log_lines(imp, "push")) do
    if l.clientMsgID then by[l.clientMsgID] = l end
  end
  return by
end

-- For each gateway, the set of users it was asked to push clientMsgID to.
function _M.delivered(env, client_msg_id)
  local out = {}
  for i, g in ipairs(env.gateways) do
    local set = {}
    local ok, pushes = pcall(_M.pushes, g)
    if ok then
      for _, p in ipairs(pushes) do
        if p.msgData and p.msgData.clientMsgID == client_msg_id then
          for _, u in ipairs(p.pushToUserIDs) do set[u] = true end
        end
      end
    end
    out[i] = set
  end
  return out
end

-- A unary gRPC call through the stand-in's client (examples/openim-standin):
-- returns the reply as a table, or nil and {code=, details=} for a gRPC
-- error. metadata defaults to an operationid.
function _M.grpc_call(addr, path, req, metadata, timeout_ms)
  ensure_npm()
  local cmd = format("node %s/standin-client.js call %s %s %s --timeout %d%s 2>&1",
    shell_quote(_M.standin_dir), addr, path, shell_quote(cjson.encode(req)), timeout_ms or 10000,
    metadata and (" --metadata " .. shell_quote(cjson.encode(metadata))) or "")
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  local j = cjson.decode((out:gsub("%s+$", "")):match("([^\n]*)$"))
  if type(j) ~= "table" then error("grpc_call " .. path .. ": " .. out, 2) end
  if j.code and j.details ~= nil then return nil, j end
  return j
end

-- impulse's own address as registered in etcd (openim/push/<ip:port>).
function _M.push_service_addr(env)
  return _M.wait_until(function()
    local k = next(_M.etcd_keys(env.etcd, "openim/push/"))
    return k and k:match("^openim/push/(.+)$")
  end, 15000, "impulse registered in etcd")
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Bytes to standard base64, padded.
function _M.base64_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64 + 1
      q[#q + 1] = B64:sub(v, v)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- Standard base64 (padding optional) to bytes.
function _M.base64_decode(s)
  local out, bits, nbits = {}, 0, 0
  for c in s:gmatch("[^=%s]") do
    local v = B64:find(c, 1, true)
    assert(v, "not base64: " .. c)
    bits = bits * 64 + (v - 1)
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local byte = math.floor(bits / 2 ^ nbits)
      out[#out + 1] = string.char(byte)
      bits = bits - byte * 2 ^ nbits
    end
  end
  return concat(out)
end

function _M.sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

_M.insert = insert
_M.remove_file = os_remove

return _M
