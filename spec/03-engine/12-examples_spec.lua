-- Every example policy loads in the engine as scripts/push.lua (next to
-- scripts/openim.lua and webhooks.lua): impulse check runs its sandbox
-- load and check().
local h = require "spec.helpers"

describe("example policies #engine", function()
  for _, name in ipairs { "vip", "quiet_hours", "tenant_provider" } do
    it(name .. ".lua passes impulse check as the policy", function()
      local dir = h.tmpdir() .. "/example-" .. name
      os.execute("mkdir -p " .. dir)
      for _, f in ipairs { "openim.lua", "webhooks.lua" } do -- what push.lua builds on
        h.write_file(dir .. "/" .. f, h.read_file("scripts/" .. f))
      end
      h.write_file(dir .. "/push.lua", h.read_file("examples/policies/" .. name .. ".lua"))
      local cfg = dir .. "/impulse.yml"
      h.write_file(cfg, "kafka: {address: [127.0.0.1:9092]}\nredis: {address: [127.0.0.1:6379]}\n"
        .. "discovery: {etcd: {address: [127.0.0.1:2379]}}\nimpulse: {scripts: " .. dir .. "}\n")
      local out = h.run(h.shell_quote(h.bin) .. " check --skip-kafka -c " .. cfg .. " 2>&1; echo rc=$?")
      assert.matches("rc=0", out)
    end)
  end
end)
