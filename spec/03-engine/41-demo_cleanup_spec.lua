-- The demo stops every process it started, however it is stopped: Ctrl-C
-- at a terminal while piped into tee (SIGINT to the whole foreground
-- process group, tee dies with the driver), SIGTERM to the driver, or its
-- stdout closed by the reader (`| head`). The processes are found by the
-- demo's own temporary folder, which every command line it starts names.
local h = require "spec.helpers"

local DEMO = "luajit examples/demo/demo.lua watch"

describe("the demo's cleanup #engine", function()
  local function env_prefix()
    return string.format("IMPULSE_BIN=%s IMPULSE_KAFKA_MOCK=%s NO_COLOR=1 ",
      h.shell_quote(h.bin), h.shell_quote(h.kafka_mock_bin))
  end

  -- pids of live processes whose command line names dir
  local function left(dir)
    local out = h.run("pgrep -f " .. h.shell_quote(dir) .. " || true")
    local pids = {}
    for pid in out:gmatch("%d+") do
      local cmd = h.read_file("/proc/" .. pid .. "/cmdline") or ""
      if cmd ~= "" and not cmd:find("pgrep", 1, true) then -- "": gone meanwhile
        pids[#pids + 1] = pid .. " " .. cmd:gsub("%z", " ")
      end
    end
    return pids
  end

  -- Starts the demo in a process group of its own (as a terminal's job)
  -- with stdout into pipe_cmd; waits until it watches; returns the group
  -- leader's pid, the demo's temporary folder and the output file.
  local function start(pipe_cmd, marker)
    marker = marker or "watching scripts/"
    local out = h.tmpdir() .. "/demo-out-" .. h.free_port()
    local p = h.spawn("demo", "setsid sh -c " .. h.shell_quote("cd " .. h.shell_quote(h.root) .. " && "
      .. env_prefix() .. DEMO .. " | " .. pipe_cmd:format(h.shell_quote(out))))
    local dir = h.wait_until(function()
      local text = h.read_file(out) or ""
      if not h.alive(p) then error("the demo ended early:\n" .. text .. (h.read_file(p.log) or ""), 0) end
      return text:find(marker, 1, true) and text:match("logs in (/tmp/impulse%-spec%-%w+)")
    end, 180000, "the demo to print " .. marker)
    if marker == "watching scripts/" then
      assert.is_true(#left(dir) >= 7, "the demo started fewer processes than expected: "
        .. table.concat(left(dir), "\n"))
    end
    return p, dir, out
  end

  local function none_left(dir, p, how)
    h.wait_until(function() return not h.alive(p) end, 60000, "the demo to end after " .. how)
    local pids
    local ok = pcall(h.wait_until, function()
      pids = left(dir)
      return #pids == 0
    end, 30000, "")
    assert(ok, how .. " left processes behind:\n" .. table.concat(pids or {}, "\n"))
    p.stopped = true
  end

  it("stops everything on Ctrl-C while piped into tee", function()
    local p, dir = start("tee %s >/dev/null")
    -- a terminal's Ctrl-C: SIGINT to every process of the job
    h.run("kill -INT -" .. p.pid)
    none_left(dir, p, "Ctrl-C")
  end)

  it("stops everything on SIGTERM to the driver", function()
    local p, dir = start("cat > %s")
    local driver = h.run("pgrep -s " .. p.pid .. " -x luajit"):match("%d+")
    assert.is_truthy(driver, "no driver process")
    h.run("kill -TERM " .. driver)
    none_left(dir, p, "SIGTERM")
  end)

  it("stops everything on SIGTERM while it is still starting", function()
    local p, dir = start("cat > %s", "starting impulse")
    local driver = h.run("pgrep -s " .. p.pid .. " -x luajit"):match("%d+")
    assert.is_truthy(driver, "no driver process")
    h.run("kill -TERM " .. driver)
    none_left(dir, p, "SIGTERM during the start")
  end)

  it("stops everything when nobody reads its output any more", function()
    local p, dir = start("tee %s >/dev/null")
    -- the reader goes (as `| head` does once it has its lines)
    h.run("pkill -s " .. p.pid .. " -x tee")
    none_left(dir, p, "a closed stdout")
  end)
end)
