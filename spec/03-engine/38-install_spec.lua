-- Install: `cmake --install` into a temporary prefix puts the binary in
-- bin/, the Lua library and the default policy under share/impulse/, the
-- sample config under etc/impulse/, the man page and the systemd units.
-- The installed binary, run from another working directory with the source
-- tree's lua/ and scripts/ hidden (an empty folder mounted over each in a
-- mount namespace of its own), finds everything beside itself and pushes
-- against the stand-ins. The installed units pass `systemd-analyze verify`
-- with no warning. This is also the image's build (deploy/Dockerfile runs
-- the same commands).
local h = require "spec.helpers"

describe("cmake --install #engine", function()
  local env, prefix

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    prefix = h.tmpdir() .. "/prefix"
    local out = h.run(string.format("cmake --install %s/build --prefix %s 2>&1; echo rc=$?",
      h.shell_quote(h.root), h.shell_quote(prefix)))
    assert.matches("rc=0\n$", out, nil, out)
  end)

  lazy_teardown(function() h.stop_env(env) end)

  it("installs the binary, the Lua library, the policy, the sample config, the man page and the units", function()
    for _, f in ipairs { "bin/impulse", "share/impulse/lua/impulse/driver.lua", "share/impulse/scripts/push.lua",
      "share/impulse/scripts/openim.lua", "etc/impulse/impulse.yml", "share/man/man1/impulse.1",
      "lib/systemd/system/impulse.service", "lib/systemd/system/impulse@.service" } do
      assert.is_truthy(h.read_file(prefix .. "/" .. f), "not installed: " .. f)
    end
    -- the sample config is valid as installed, with the installed policy
    local out = h.run(string.format("cd / && %s/bin/impulse check --skip-kafka -c %s/etc/impulse/impulse.yml 2>&1",
      prefix, prefix))
    assert.matches("^ok: ", out)
    assert.matches("scripts " .. prefix .. "/share/impulse/scripts, Lua library " .. prefix
      .. "/share/impulse/lua", out, 1, true)
    -- the man page renders
    local man = h.run(string.format("MANWIDTH=80 man -l %s/share/man/man1/impulse.1 2>&1 | head -5", prefix))
    assert.matches("impulse %- push engine for OpenIM", man)
  end)

  it("runs from another folder with the source tree's lua/ and scripts/ out of sight", function()
    local empty, elsewhere = h.tmpdir() .. "/empty", h.tmpdir() .. "/elsewhere"
    h.run("mkdir -p " .. empty .. " " .. elsewhere)
    local cfg, admin = h.impulse_config(env, { scripts = false })
    local imp = h.spawn("impulse-installed", string.format(
      "unshare -m sh -c 'mount --bind %s %s/lua && mount --bind %s %s/scripts && cd %s && "
        .. "exec %s/bin/impulse run -c %s'",
      empty, h.root, empty, h.root, elsewhere, prefix, cfg))
    imp.admin = "http://127.0.0.1:" .. admin
    finally(function() h.stop(imp) end)
    h.wait_ready(imp, 60000)
    local line = h.log_lines(imp, "impulse ")
    local start
    for _, l in ipairs(line) do if l.msg:find("starting", 1, true) then start = l.msg end end
    assert.is_truthy(start, "no start line")
    assert.matches("scripts in " .. prefix .. "/share/impulse/scripts", start, 1, true)
    -- the source tree really was out of its sight
    local seen = h.run(string.format("nsenter -t %d -m ls %s/lua | wc -l", imp.pid, h.root))
    assert.equal("0", seen:match("%d+"), "the source tree's lua/ was visible: " .. seen)

    h.set_online(env, { ina = { 1 } }, env.gateways[1], true)
    local m = h.push_msg { sendID = "bob", recvID = "ina" }
    h.produce(env, m)
    local got = h.wait_until(function()
      return h.http_json("GET", env.gateways[1].control .. "/seen")[m.clientMsgID]
    end, 30000, "the push through the installed binary")
    assert.same({ "ina" }, got)
  end)

  it("installs systemd units that systemd-analyze verifies without a warning", function()
    for _, unit in ipairs { "impulse.service", "impulse@.service" } do
      local copy = h.tmpdir() .. "/" .. unit
      h.run(string.format("sed 's#/usr/bin/impulse#%s/bin/impulse#g' %s/lib/systemd/system/%s > %s",
        prefix, prefix, unit, copy))
      local out = h.run(string.format("systemd-analyze verify --man=no %s 2>&1; echo rc=$?", copy))
      assert.equal("rc=0", out:match("^%s*(.-)%s*$"), unit .. ": " .. out)
      -- a broken one is caught (the check can fail)
      h.run(string.format("sed -i 's/^Type=notify/Type=notifyy/' %s", copy))
      out = h.run(string.format("systemd-analyze verify --man=no %s 2>&1; echo rc=$?", copy))
      assert.matches("Failed to parse service type", out, 1, true)
    end
  end)

  -- deploy/Dockerfile cannot be built here (no base images): what can be
  -- checked is that it runs this spec's install and that its runtime stage
  -- installs the package of every library the binary links directly
  it("has a Dockerfile whose runtime stage holds every library the binary needs", function()
    local df = assert(h.read_file(h.root .. "/deploy/Dockerfile"))
    assert.matches("cmake --install /build --prefix /opt/impulse", df, 1, true)
    local runtime = df:match("FROM debian:12%-slim(.*)$")
    assert.is_truthy(runtime, "no runtime stage")
    local needed = h.run(string.format("objdump -p %s/bin/impulse | awk '/NEEDED/{print $2}'", prefix))
    local n = 0
    for lib in needed:gmatch("%S+") do
      local pkg = h.run("dpkg -S '*/" .. lib .. "' 2>/dev/null | head -1 | cut -d: -f1"):match("%S+")
      assert.is_truthy(pkg, "no Debian package holds " .. lib)
      if pkg ~= "libc6" then -- in every Debian image
        assert.is_truthy(runtime:find(" " .. pkg:gsub("%p", "%%%0") .. "[%s\\]"),
          lib .. " (" .. pkg .. ") is not installed by the Dockerfile's runtime stage")
      end
      n = n + 1
    end
    assert.is_true(n >= 10, "objdump listed " .. n .. " libraries: " .. needed)
  end)
end)
