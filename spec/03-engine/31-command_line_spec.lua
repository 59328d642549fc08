-- The command line: openim-push's (-c/--config_folder_path, -i/--index,
-- also when the binary is linked as openim-push), help for the program and
-- each command, unknown options and stray arguments refused with one line
-- (issue 14, item 7). No servers: only what the binary says and exits with.
local h = require "spec.helpers"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out:gsub("rc=%d+%s*$", "")
end

describe("the command line #engine", function()
  local dir, bin

  lazy_setup(function()
    dir = h.tmpdir()
    bin = h.bin
  end)

  -- a config that needs no server for `check --skip-kafka`
  local function config(extra)
    local path = dir .. "/cli-" .. h.free_port() .. ".yml"
    local f = assert(io.open(path, "w"))
    f:write("kafka: {address: [127.0.0.1:9]}\nredis: {address: [127.0.0.1:9]}\n",
      "discovery: {etcd: {address: [127.0.0.1:9]}}\n",
      "impulse: {scripts: " .. h.root .. "/scripts, crashJournal: ''}\n", extra or "")
    f:close()
    return path
  end

  it("prints help for the program and for each command, exit 0", function()
    for _, args in ipairs { "-h", "--help", "help", "run -h", "check --help", "replay -h", "test -h" } do
      local rc, out = run(bin .. " " .. args)
      assert.equal(0, rc, args .. ": " .. out)
      assert.matches("usage: impulse", out, 1, true)
    end
    local rc, out = run(bin .. " check -h")
    assert.equal(0, rc)
    assert.matches("--skip-kafka", out, 1, true)
    assert.matches("-c, --config_folder_path", out, 1, true)
    rc, out = run(bin .. " --version")
    assert.equal(0, rc)
    assert.matches("^impulse %d", out)
  end)

  it("refuses unknown options, stray arguments and bad values with one line, exit 2", function()
    local cfg = config()
    for _, case in ipairs {
      { "run -c " .. cfg .. " --bogus", "unknown option '--bogus'" },
      { "check -c " .. cfg .. " extra", "unexpected argument 'extra'" },
      { "check -c " .. cfg .. " -i x", "-i 'x' is not a process index" },
      { "replay -c " .. cfg .. " --max many", "--max 'many' is not a count" },
      { "check", "-c <config> is required" },
      { "run -c", "needs a value" },
      { "frobnicate", "unknown command 'frobnicate'" },
    } do
      local rc, out = run(bin .. " " .. case[1])
      assert.equal(2, rc, case[1] .. ": " .. out)
      assert.matches(case[2], out, 1, true)
      if case[1] ~= "frobnicate" then
        assert.equal(1, select(2, out:gsub("\n", "")), case[1] .. ": more than one line: " .. out)
      end
    end
  end)

  it("takes -c in openim-push's forms", function()
    local cfg = config()
    for _, form in ipairs { "-c " .. cfg, "-c=" .. cfg, "-c" .. cfg, "--config_folder_path " .. cfg,
                            "--config_folder_path=" .. cfg, "--config " .. cfg } do
      local rc, out = run(bin .. " check --skip-kafka " .. form)
      assert.equal(0, rc, form .. ": " .. out)
      assert.matches("ok: " .. cfg:gsub("%p", "%%%0"), out)
    end
  end)

  it("takes the ports of its index (-i) from rpc.ports and prometheus.ports", function()
    local cfg = config("openim-push:\n  prometheus: {enable: true, ports: [20113, 20114]}\n" ..
      "  rpc: {autoSetPorts: false, ports: [10170, 10171]}\n")
    assert.equal(0, (run(bin .. " check --skip-kafka -c " .. cfg .. " -i 1")))
    local rc, out = run(bin .. " check --skip-kafka -c " .. cfg .. " -i 2")
    assert.equal(2, rc)
    assert.matches("openim-push.prometheus.ports:", out, 1, true)
    assert.matches("no port for index 2", out, 1, true)
  end)

  it("runs with openim-push's command line, as `impulse -c` and linked as openim-push", function()
    local link = dir .. "/openim-push"
    os.execute("ln -sf \"$(realpath " .. bin .. ")\" " .. link)
    -- a config that fails: proves the run command read it
    local cfg = config("share: {imAdminUserID: {a: b}}\n")
    for _, cmd in ipairs { bin .. " -c " .. cfg .. " -i 0", link .. " -c " .. cfg .. " -i 0" } do
      local rc, out = run(cmd)
      assert.equal(2, rc, cmd .. ": " .. out)
      assert.matches("config: share.imAdminUserID", out, 1, true)
    end
    local rc, out = run(link .. " -h")
    assert.equal(0, rc)
    assert.matches("usage: impulse run", out, 1, true)
    rc, out = run(link .. " --version")
    assert.equal(0, rc)
    assert.matches("^impulse %d", out)
  end)
end)
