-- examples/policies/tenant_provider.lua (or the copy POLICY names, e.g. POLICY=scripts/push.lua)
local testing = require "impulse.testing"

describe("examples/policies/tenant_provider.lua", function()
  local policy

  before_each(function()
    testing.setup {}
    policy = testing.load_policy(os.getenv("POLICY") or "examples/policies/tenant_provider.lua", "scripts")
  end)

  it("chooses the provider by user-ID prefix", function()
    local msg = testing.message {}
    assert.equal("getui", policy.provider("cn-1001", msg, testing.ctx()))
    assert.equal("jpush", policy.provider("jp-7", msg, testing.ctx()))
    assert.equal("apns", policy.provider("ios-x", msg, testing.ctx()))
    assert.equal("fcm", policy.provider("eu-42", msg, testing.ctx()))
    assert.is_nil(policy.provider("us-1", msg, testing.ctx())) -- the configured default
  end)

  it("sends the users of an app in impulse.apps with that app's accounts", function()
    testing.setup { providers = { apps = { shop = { fcm = { filePath = "shop.json" } } } } }
    policy = testing.load_policy(os.getenv("POLICY") or "examples/policies/tenant_provider.lua", "scripts")
    local msg = testing.message {}
    assert.equal("fcm@shop", policy.provider("shop.eu-42", msg, testing.ctx()))
    assert.equal("getui@shop", policy.provider("shop.cn-1", msg, testing.ctx()))
    assert.equal("fcm", policy.provider("eu-42", msg, testing.ctx()))
    -- not an app of impulse.apps: the default app, by the whole ID
    assert.is_nil(policy.provider("news.eu-42", msg, testing.ctx()))
    assert.equal("getui", policy.provider("cn-news.eu", msg, testing.ctx()))
    assert.is_nil(policy.provider("shop.us-1", msg, testing.ctx())) -- the configured default
  end)

  it("routes and decides offline pushes as OpenIM does", function()
    local msg = testing.message { sendID = "cn-1", recvID = "eu-2" }
    assert.same({ "eu-2", "cn-1" }, policy.route(msg, testing.ctx()))
    assert.same({ "eu-2" }, (policy.offline(msg, testing.ctx(), { reached = {}, not_reached = { "eu-2" } })))
  end)

  it("passes its check", function()
    assert.is_true(policy.check())
  end)
end)
