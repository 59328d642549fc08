-- Several apps in one engine (impulse.apps, issue 17 item 5): the example
-- policy examples/policies/tenant_provider.lua as scripts/push.lua, two
-- apps (the default, OpenIM's sections, and "shop", its own Getui, FCM,
-- JPush and APNs accounts) against the fake providers, which tell the
-- accounts apart (examples/openim-standin/lib/providers: `accounts`).
local h = require "spec.helpers"
local cjson = require "cjson"

local HEX_MAIN, HEX_SHOP = string.rep("ab", 32), string.rep("cd", 32)

local function run_impulse(args)
  local out = h.run(h.shell_quote(h.bin) .. " " .. args .. " 2>&1; echo \"rc=$?\"")
  local text, rc = out:match("^(.*)rc=(%d+)%s*$")
  return tonumber(rc), text
end

describe("several apps #engine", function()
  local env, imp, fake, k, shop_keys, push_yaml, impulse_yaml

  local function control(method, path, body)
    return h.http_json(method, fake.control .. path, body)
  end

  -- the requests of provider whose field(r) is the message's clientMsgID
  local function of_msg(provider, m, field)
    local out = {}
    for _, r in ipairs(control("GET", "/requests?provider=" .. provider)) do
      local ok, v = pcall(field, r)
      if ok and v == m.clientMsgID then out[#out + 1] = r end
    end
    return out
  end

  lazy_setup(function()
    env = h.start_env { gateways = 1 }
    k = h.test_pki()
    fake = h.start_providers()
    -- the shop app's own keys
    local d = h.tmpdir() .. "/apps-pki"
    assert(os.execute(table.concat({
      "mkdir -p " .. d,
      "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. d .. "/fcm.key 2>/dev/null",
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. d .. "/apns.p8 2>/dev/null",
    }, " && ")))
    shop_keys = { fcm = d .. "/fcm.key", apns = d .. "/apns.p8" }

    local main_sa, shop_sa = h.tmpdir() .. "/apps-fcm-main.json", h.tmpdir() .. "/apps-fcm-shop.json"
    h.write_file(main_sa, cjson.encode {
      type = "service_account", project_id = "proj1", client_email = "impulse@proj1.iam.gserviceaccount.com",
      private_key = h.read_file(k.fcm_key), token_uri = fake.base .. "/token",
    })
    h.write_file(shop_sa, cjson.encode {
      type = "service_account", project_id = "proj-shop", client_email = "push@proj-shop.iam.gserviceaccount.com",
      private_key = h.read_file(shop_keys.fcm), token_uri = fake.base .. "/token",
    })
    control("POST", "/config/getui",
      { accounts = { { appId = "shop", appKey = "shopkey", masterSecret = "shopsecret" } } })
    control("POST", "/config/fcm", {
      publicKeyPem = h.read_file(k.fcm_pub), tokenUri = fake.base .. "/token",
      accounts = { { projectId = "proj-shop", clientEmail = "push@proj-shop.iam.gserviceaccount.com",
                     publicKeyPem = h.read_file(shop_keys.fcm) } },
    })
    control("POST", "/config/jpush", { accounts = { { appKey = "jshop", masterSecret = "jshopsecret" } } })
    control("POST", "/config/apns", {
      publicKeyPem = h.read_file(k.apns_pub), keyId = "KEY123", teamId = "TEAM123", topic = "com.example.app",
      accounts = { { keyId = "SHOPKEY", teamId = "SHOPTEAM", topic = "com.example.shop",
                     publicKeyPem = h.read_file(shop_keys.apns) } },
    })

    local dir = h.tmpdir() .. "/apps-scripts"
    os.execute("mkdir -p " .. dir .. " && cp -r " .. h.root .. "/scripts/. " .. dir)
    h.write_file(dir .. "/push.lua", h.read_file(h.root .. "/examples/policies/tenant_provider.lua"))
    push_yaml = table.concat({
      "  geTui:",
      "    pushUrl: " .. fake.base .. "/v2/app1",
      "    appKey: key1",
      "    masterSecret: secret1",
      "  jpush:",
      "    appKey: jkey",
      "    masterSecret: jsecret",
      "    pushURL: " .. fake.base .. "/v3/push",
      "  fcm:",
      "    filePath: " .. main_sa,
    }, "\n")
    impulse_yaml = table.concat({
      "  providers:",
      "    caFile: " .. k.ca,
      "    backoffMs: 200",
      "    maxBackoffMs: 1000",
      "    deadlineMs: 30000",
      "    fcm:",
      "      sendURL: " .. fake.base,
      "    apns:",
      "      url: " .. fake.base,
      "      keyFile: " .. k.apns_key,
      "      keyId: KEY123",
      "      teamId: TEAM123",
      "      topic: com.example.app",
      "  apps:",
      "    shop:",
      "      geTui:",
      "        pushUrl: " .. fake.base .. "/v2/shop",
      "        appKey: shopkey",
      "        masterSecret: shopsecret",
      "      fcm:",
      "        filePath: " .. shop_sa,
      "      jpush:",
      "        appKey: jshop",
      "        masterSecret: jshopsecret",
      "        pushURL: " .. fake.base .. "/v3/push",
      "      providers:",
      "        apns:",
      "          keyFile: " .. shop_keys.apns,
      "          keyId: SHOPKEY",
      "          teamId: SHOPTEAM",
      "          topic: com.example.shop",
    }, "\n")
    imp = h.start_impulse(env, { workers = 2, scripts = dir, provider = "none", push_yaml = push_yaml,
                                 impulse_yaml = impulse_yaml })
  end)

  lazy_teardown(function()
    h.stop_env(env)
  end)

  it("pushes each app's users with that app's accounts, for all four providers", function()
    for _, u in ipairs { "eu-1", "shop.eu-2" } do
      h.redis_cli(env.redis, "SET", "FCM_TOKEN:" .. u .. ":2", "tok-" .. u)
    end
    h.redis_cli(env.redis, "SET", "APNS_TOKEN:ios-1:1", HEX_MAIN)
    h.redis_cli(env.redis, "SET", "APNS_TOKEN:shop.ios-2:1", HEX_SHOP)
    local members = { "zed", "cn-1", "shop.cn-2", "shop.cn-3", "eu-1", "shop.eu-2", "jp-1", "shop.jp-2",
                      "ios-1", "shop.ios-2" }
    h.set_group(env, "g-apps", members)
    local m = h.push_msg { sendID = "zed", recvID = "", groupID = "g-apps", sessionType = 3 }
    h.produce(env, m)

    -- Getui: the default app's single push and shop's list push, each
    -- under its own appId with a token issued for it
    -- (this spec's only Getui message)
    local gt = h.wait_until(function()
      local pushes, alias = {}, {}
      for _, q in ipairs(control("GET", "/requests?provider=getui")) do
        if q.path:match("/push/single/alias$") or q.path:match("/push/list/message$") then pushes[#pushes + 1] = q end
        if q.path:match("/push/list/alias$") and q.status == 200 then alias[#alias + 1] = q end
      end
      return #pushes >= 2 and #alias >= 1 and { pushes, alias }
    end, 30000, "Getui pushes of both apps")
    local paths = {}
    for _, q in ipairs(gt[1]) do
      assert.equal(200, q.status)
      paths[#paths + 1] = q.path
    end
    table.sort(paths)
    assert.same({ "/v2/app1/push/single/alias", "/v2/shop/push/list/message" }, paths)
    assert.same({ "shop.cn-2", "shop.cn-3" }, gt[2][#gt[2]].body.audience.alias)
    assert.matches("^/v2/shop/", gt[2][#gt[2]].path)
    -- two tokens, each app's in its own Redis key (OpenIM's for the default)
    local main_tok = h.redis_cli(env.redis, "GET", "GETUI_TOKEN"):gsub("%s+$", "")
    local shop_tok = h.redis_cli(env.redis, "GET", "GETUI_TOKEN:shop"):gsub("%s+$", "")
    assert.matches("^gt%-", main_tok)
    assert.matches("^gt%-", shop_tok)
    assert.are_not.equal(main_tok, shop_tok)

    -- FCM: each device through its app's project, with its account's token
    local fcm = h.wait_until(function()
      local r = of_msg("fcm", m, function(q) return q.body.message.android.collapse_key end)
      return #r >= 2 and r
    end, 30000, "FCM sends of both apps")
    local by_token = {}
    for _, q in ipairs(fcm) do
      assert.equal(200, q.status)
      by_token[q.body.message.token] = q.path
    end
    assert.same({ ["tok-eu-1"] = "/v1/projects/proj1/messages:send",
                  ["tok-shop.eu-2"] = "/v1/projects/proj-shop/messages:send" }, by_token)

    -- JPush: each app's alias with its own Basic auth
    local jp = h.wait_until(function()
      local r = of_msg("jpush", m, function(q) return q.body.message.extras.ClientMsgID end)
      return #r >= 2 and r
    end, 30000, "JPush pushes of both apps")
    local auth = {}
    for _, q in ipairs(jp) do
      assert.equal(200, q.status)
      auth[q.body.audience.alias[1]] = q.headers.authorization
    end
    assert.same({ ["jp-1"] = "Basic " .. h.base64_encode("jkey:jsecret"),
                  ["shop.jp-2"] = "Basic " .. h.base64_encode("jshop:jshopsecret") }, auth)

    -- APNs: each app's device with its key and topic
    local apns = h.wait_until(function()
      local r = of_msg("apns", m, function(q) return q.headers["apns-collapse-id"] end)
      return #r >= 2 and r
    end, 30000, "APNs pushes of both apps")
    local topics = {}
    for _, q in ipairs(apns) do
      assert.equal(200, q.status)
      topics[q.path] = q.headers["apns-topic"]
    end
    assert.same({ ["/3/device/" .. HEX_MAIN] = "com.example.app", ["/3/device/" .. HEX_SHOP] = "com.example.shop" },
      topics)

    -- counted per app: shop's users with app="shop", the default's as before
    h.wait_until(function()
      return h.metric(imp, "impulse_offline_push_total", 'app="shop",provider="getui",result="sent"') == 2
        and h.metric(imp, "impulse_offline_push_total", 'provider="getui",result="sent"') == 1
    end, 30000, "the offline push counters by app")
    for _, p in ipairs { "fcm", "jpush", "apns" } do
      assert.equal(1, h.metric(imp, "impulse_offline_push_total", 'app="shop",provider="' .. p .. '",result="sent"'))
      assert.equal(1, h.metric(imp, "impulse_offline_push_total", 'provider="' .. p .. '",result="sent"'))
      assert.equal(1,
        h.metric(imp, "impulse_provider_requests_total", 'app="shop",provider="' .. p .. '",result="sent"'))
    end
    assert.equal(0, h.metric(imp, "impulse_provider_requests_total", 'app="shop",provider="fcm",result="failed"'))
  end)

  it("explains which app each user's push goes to (README's example, examples/apps)", function()
    local out = h.run(h.shell_quote(h.bin) .. " explain -c examples/apps/impulse.yml examples/apps/group.json"
      .. " --offline-data examples/apps/data.json --policy examples/policies/tenant_provider.lua --json 2>&1")
    local doc = cjson.decode(out)
    local seen = {}
    for _, st in ipairs(doc.steps) do
      if st.kind == "provider_choice" then
        seen[#seen + 1] = st.user .. " " .. st.provider
        if st.user == "shop.eu-ben" then
          local line = h.run("sed -n " .. st.at:match(":(%d+)$") .. "p examples/policies/tenant_provider.lua")
          assert.matches('return p.provider .. "@" .. app', line, 1, true)
        end
      elseif st.kind == "payload" or st.kind == "send" then
        seen[#seen + 1] = st.kind .. " " .. st.provider .. "@" .. tostring(st.app)
      end
    end
    assert.same({ "eu-anna fcm", "shop.eu-ben fcm@shop", "payload fcm@nil", "send fcm@nil", "payload fcm@shop",
                  "send fcm@shop" }, seen)
  end)

  it("checks every app's credentials with impulse check", function()
    local rc, out = run_impulse("check --skip-kafka -c " .. imp.config)
    assert.equal(0, rc, out)
    assert.matches("^ok: ", out)
    assert.matches("\napps: shop (getui, fcm, jpush, apns): accounts checked\n", out, 1, true)
    -- and the start said so
    assert.matches("apps: shop (getui, fcm, jpush, apns): accounts checked", h.read_file(imp.log), 1, true)
    assert.is_nil(out:find("warning", 1, true), out)
  end)

  it("reads each app's files relative to the config's folder, whatever -c looks like", function()
    -- a relative -c: the loader resolves the paths once (they were
    -- prefixed twice, for the default's fcm.filePath too)
    local dir = h.tmpdir() .. "/apps-rel"
    os.execute("mkdir -p " .. dir)
    h.write_file(dir .. "/shop.json", h.read_file(h.tmpdir() .. "/apps-fcm-shop.json"))
    h.write_file(dir .. "/main.json", h.read_file(h.tmpdir() .. "/apps-fcm-main.json"))
    h.write_file(dir .. "/shop.p8", h.read_file(shop_keys.apns))
    local text = h.read_file(imp.config):gsub("filePath: [^\n]*apps%-fcm%-shop%.json", "filePath: shop.json")
      :gsub("filePath: [^\n]*apps%-fcm%-main%.json", "filePath: main.json")
      :gsub("keyFile: [^\n]*apps%-pki/apns%.p8", "keyFile: shop.p8")
      :gsub("enable: none", "enable: fcm")
    assert.matches("filePath: shop.json", text, 1, true)
    assert.matches("filePath: main.json", text, 1, true)
    assert.matches("keyFile: shop.p8", text, 1, true)
    h.write_file(dir .. "/impulse.yml", text)
    local out = h.run("cd " .. h.shell_quote(h.tmpdir()) .. " && " .. h.shell_quote(h.bin)
      .. " check --skip-kafka -c apps-rel/impulse.yml 2>&1; echo \"rc=$?\"")
    assert.matches("rc=0", out)
    assert.matches("\nok: ", "\n" .. out)
    assert.is_nil(out:find("warning", 1, true), out)
  end)

  for _, case in ipairs {
    { "filePath: " .. "/nonexistent/shop.json",
      "config: impulse.apps.shop.fcm.filePath: cannot read /nonexistent/shop.json" },
    { "filePth: x.json", "config: impulse.apps.shop.fcm.filePth: unknown key" },
  } do
    it("stops the start and impulse check in one line on " .. case[2], function()
      local bad = impulse_yaml:gsub("filePath: [^\n]*apps%-fcm%-shop%.json", case[1])
      assert.are_not.equal(bad, impulse_yaml)
      local cfg = h.impulse_config(env, { scripts = h.tmpdir() .. "/apps-scripts", provider = "none",
                                          push_yaml = push_yaml, impulse_yaml = bad })
      for _, cmd in ipairs { "check --skip-kafka", "run" } do
        local rc, out = run_impulse(cmd .. " -c " .. cfg)
        assert.equal(2, rc, out)
        assert.matches(case[2], out, 1, true)
        assert.equal(1, select(2, out:gsub("\n", "")), "one line: " .. out)
      end
    end)
  end
end)
