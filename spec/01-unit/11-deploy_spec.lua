-- The Kubernetes manifests (deploy/kubernetes) and the Helm chart
-- (deploy/helm/impulse), checked offline: the chart is rendered by
-- spec/helpers/gotmpl.lua (the subset of Go templates it uses), the output
-- and the plain manifests are parsed with libyaml (spec/helpers/yamldoc.lua)
-- and their structure asserted: what impulse needs to run in a pod (the
-- command line, probes, drain time, IMENV_ variables, config and scripts
-- folders, RBAC for Kubernetes discovery, Prometheus), and that both agree.
-- With kubectl on PATH the objects are also decoded by kubectl's own types
-- (`kubectl set env --local`), which needs no cluster.
--
-- deploy/kubernetes/configmap-scripts.yaml is generated from scripts/:
--   IMPULSE_WRITE_MANIFESTS=1 busted --lua=luajit spec/01-unit/11-deploy_spec.lua
local gotmpl = require "spec.helpers.gotmpl"
local yamldoc = require "spec.helpers.yamldoc"

local CHART = "deploy/helm/impulse"
local PLAIN = "deploy/kubernetes"
local SCRIPTS_CM = PLAIN .. "/configmap-scripts.yaml"
local RELEASE = { Name = "openimserver", Namespace = "openim" }

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- the engine's own numbers, read from its source so a change there shows here
local ENGINE_DRAIN_MS = tonumber(read("engine/base/config.c"):match('"drainTimeoutMs",%s*(%d+)'))
local GUARD_MS = tonumber(read("engine/main.c"):match("#define SHUTDOWN_MARGIN_MS%s+(%d+)"))

local function render(override)
  local text = gotmpl.render_chart(CHART, override, RELEASE)
  return yamldoc.load_all(text, "rendered chart"), text
end

local function of_kind(docs, kind)
  local out = {}
  for _, d in ipairs(docs) do
    if d.kind == kind then out[#out + 1] = d end
  end
  return out
end

local function one(docs, kind)
  local list = of_kind(docs, kind)
  assert(#list == 1, "expected one " .. kind .. ", got " .. #list)
  return list[1]
end

local function kinds(docs)
  local out = {}
  for _, d in ipairs(docs) do out[#out + 1] = d.kind end
  table.sort(out)
  return out
end

local function pod(deploy) return deploy.spec.template.spec end
local function container(deploy) return pod(deploy).containers[1] end

local function env_of(c)
  local out = {}
  for _, e in ipairs(c.env or {}) do
    assert(out[e.name] == nil, "env " .. e.name .. " twice")
    out[e.name] = e
  end
  return out
end

local function env_names(c)
  local out = {}
  for _, e in ipairs(c.env or {}) do out[#out + 1] = e.name end
  table.sort(out)
  return out
end

local function by_name(list)
  local out = {}
  for _, x in ipairs(list or {}) do out[x.name] = x end
  return out
end

local function port_named(c, name)
  for _, p in ipairs(c.ports) do
    if p.name == name then return p.containerPort end
  end
end

-- the folder of scripts/ as the chart's values list it (path → content)
local function scripts_files()
  local out = {}
  for _, path in ipairs(lines_of("cd scripts && find . -type f -name '*.lua' | sort")) do
    path = path:gsub("^%./", "")
    out[path] = read("scripts/" .. path)
  end
  return out
end

-- deploy/kubernetes/configmap-scripts.yaml as it must read
local function scripts_configmap(order)
  local out = {
    "# Generated from scripts/ by spec/01-unit/11-deploy_spec.lua; do not edit. After",
    "# changing scripts/, regenerate it:",
    "#   IMPULSE_WRITE_MANIFESTS=1 busted --lua=luajit spec/01-unit/11-deploy_spec.lua",
    "# (the same as kubectl create configmap impulse-scripts --from-file=push.lua=scripts/push.lua",
    "# ... --from-file=providers.log.lua=scripts/providers/log.lua --dry-run=client -o yaml).",
    "# A ConfigMap key cannot hold \"/\": providers/x.lua is the key providers.x.lua, mounted",
    "# back at its path by deployment.yaml's items.",
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata:",
    "  name: impulse-scripts",
    "data:",
  }
  for _, path in ipairs(order) do
    local body = read("scripts/" .. path)
    assert(body:sub(-1) == "\n" and not body:find("\n\n$") and not body:find("^%s"),
      "scripts/" .. path .. ": must end with one newline and not start with a blank")
    out[#out + 1] = "  " .. path:gsub("/", ".") .. ": |"
    for l in body:gmatch("([^\n]*)\n") do
      out[#out + 1] = l == "" and "" or "    " .. l
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local VALUES = yamldoc.load(read(CHART .. "/values.yaml"), "values.yaml")
local CHART_META = yamldoc.load(read(CHART .. "/Chart.yaml"), "Chart.yaml")

describe("gotmpl (the renderer the chart is checked with)", function()
  it("trims, branches, ranges and pipes as Go templates do", function()
    local out = gotmpl.render(table.concat({
      '{{- define "n" -}}{{ .a }}-{{ default "x" .b }}{{- end -}}',
      'a: {{ include "n" . }}',
      '{{- if eq .a "k8s" }} k8s{{ else if .c }} c={{ .c | quote }}{{ else }} none{{ end }}',
      '{{- range .l }} {{ . | replace "/" "." }}{{ end }}',
      '{{- range .m }} {{ . }}{{ end }}',
      '{{- with .missing }} never{{ end }} {{ printf "%s/%d" .a 3 }} {{ not .c }}',
      '{{/* a comment */}}',
    }, "\n"), { a = "etcd", c = 'say "hi"', l = yamldoc.seq { "a/b", "c" }, m = { z = 2, y = 1 } })
    assert.equal('a: etcd-x c="say \\"hi\\"" a.b c 1 2 etcd/3 false\n', out)
  end)

  it("writes toYaml that libyaml reads back to the same values", function()
    local v = {
      s = "a: b", n = 12, b = true, q = "true", e = "", empty = {}, list = yamldoc.seq {},
      nested = yamldoc.seq { { name = "A", value = "x y" }, "plain", 3 }, odd = "#not a comment",
    }
    assert.same(v, yamldoc.load("root:" .. gotmpl.render("{{ toYaml . | nindent 2 }}", v)).root)
  end)

  it("refuses a field read through a missing map and what it does not support", function()
    assert.has_error(function() gotmpl.render("{{ .Values.typo.x }}", { Values = {} }, "t") end,
      "nil pointer evaluating .Values.typo.x") -- luassert drops the "t:1: " before it
    assert.has_error(function() gotmpl.render("{{ $x := 1 }}", {}, "t") end, "variables are not supported")
    assert.has_error(function() gotmpl.render("{{ trunc 3 .a }}", {}, "t") end,
      'function "trunc" not supported')
  end)
end)

describe("Helm chart with its default values", function()
  local docs, deploy, c, env
  setup(function()
    docs = render()
    deploy = one(docs, "Deployment")
    c = container(deploy)
    env = env_of(c)
  end)

  it("renders a Deployment, its Service and the scripts ConfigMap, and nothing else", function()
    assert.same({ "ConfigMap", "Deployment", "Service" }, kinds(docs))
  end)

  it("keeps the names of OpenIM's openim-push chart", function()
    -- OpenIM's chart: <release>-openim-push, label app.kubernetes.io/name: openim-push,
    -- Service ports http 80 and metrics-port 90 (its ServiceMonitor's port)
    local svc = one(docs, "Service")
    assert.equal("openimserver-openim-push", deploy.metadata.name)
    assert.equal("openimserver-openim-push", svc.metadata.name)
    assert.equal("openim-push", deploy.spec.template.metadata.labels["app.kubernetes.io/name"])
    assert.same(deploy.spec.selector.matchLabels, deploy.spec.template.metadata.labels)
    assert.same(deploy.spec.template.metadata.labels, svc.spec.selector)
    local ports = by_name(svc.spec.ports)
    assert.same({ port = 80, targetPort = "http", protocol = "TCP", name = "http" }, ports.http)
    assert.same({ port = 90, targetPort = "metrics", protocol = "TCP", name = "metrics-port" }, ports["metrics-port"])
    assert.truthy(port_named(c, "http"))
    assert.truthy(port_named(c, "metrics"))
  end)

  it("runs the values' image with openim-push's command line", function()
    assert.equal(VALUES.image.repository .. ":" .. CHART_META.appVersion, c.image)
    assert.equal("impulse", VALUES.image.repository)
    assert.is_nil(c.command) -- the image's entrypoint: /opt/impulse/bin/impulse (deploy/Dockerfile)
    assert.same({ "-c", "/config", "-i", "0" }, c.args)
    assert.matches('ENTRYPOINT %["/opt/impulse/bin/impulse"%]', read("deploy/Dockerfile"))
  end)

  it("probes /readyz and /healthz on the loopback admin listener, which needs no token", function()
    local admin = env.IMENV_IMPULSE_ADMIN.value
    assert.equal("127.0.0.1:9470", admin)
    assert.is_nil(env.IMENV_IMPULSE_ADMINTOKEN)
    assert.same({ "curl", "-fsS", "-o", "/dev/null", "http://" .. admin .. "/readyz" },
      c.readinessProbe.exec.command)
    assert.same({ "curl", "-fsS", "-o", "/dev/null", "http://" .. admin .. "/healthz" },
      c.livenessProbe.exec.command)
    assert.matches("curl", read("deploy/Dockerfile"), 1, true) -- the probes' curl is in the image
    -- a stuck start is not killed before it could be ready
    assert.truthy(c.livenessProbe.initialDelaySeconds >= 10)
  end)

  it("gives SIGTERM's drain and its guard time before the kill", function()
    assert.equal(25000, ENGINE_DRAIN_MS)
    assert.equal(4000, GUARD_MS)
    local drain = tonumber(env.IMENV_IMPULSE_DRAINTIMEOUTMS.value)
    assert.equal(VALUES.impulse.drainTimeoutMs, drain)
    assert.equal(ENGINE_DRAIN_MS, drain)
    local grace = pod(deploy).terminationGracePeriodSeconds
    assert.truthy(grace * 1000 > drain + GUARD_MS, grace .. " s is not above " .. drain + GUARD_MS .. " ms")
  end)

  it("configures through IMENV_ variables, the passwords from Secrets", function()
    for _, e in ipairs(c.env) do
      assert.truthy(e.name:match("^[A-Z][A-Z0-9_]*$"), e.name)
    end
    assert.same({ secretKeyRef = { name = "openim-redis-secret", key = "redis-password" } },
      env.IMENV_REDIS_PASSWORD.valueFrom)
    assert.same({ secretKeyRef = { name = "openim-kafka-secret", key = "kafka-password" } },
      env.IMENV_KAFKA_PASSWORD.valueFrom)
    assert.is_nil(env.IMENV_REDIS_PASSWORD.value)
    -- fixed ports: Kubernetes cannot find random ones
    assert.equal("false", env.IMENV_OPENIM_PUSH_RPC_AUTOSETPORTS.value)
    assert.equal(tostring(port_named(c, "http")), env.IMENV_OPENIM_PUSH_RPC_PORTS.value)
    assert.equal("true", env.IMENV_OPENIM_PUSH_PROMETHEUS_ENABLE.value)
    assert.equal(tostring(port_named(c, "metrics")), env.IMENV_OPENIM_PUSH_PROMETHEUS_PORTS.value)
    assert.same({ fieldRef = { fieldPath = "status.podIP" } }, env.IMENV_OPENIM_PUSH_RPC_REGISTERIP.valueFrom)
    assert.equal("etcd", env.IMENV_IMPULSE_DISCOVERY.value)
    assert.equal("/var/lib/impulse/logs/", env.IMENV_LOG_STORAGELOCATION.value)
    assert.is_nil(env.IMENV_IMPULSE_OPENIM)
  end)

  it("mounts OpenIM's config folder, the scripts folder and the state folder", function()
    local mounts, vols = by_name(c.volumeMounts), by_name(pod(deploy).volumes)
    assert.same({ name = "config", mountPath = "/config", readOnly = true }, mounts.config)
    assert.same({ name = "openim-config" }, vols.config.configMap)
    assert.equal(c.args[2], mounts.config.mountPath)
    assert.equal(c.args[2], env.CONFIG_PATH.value) -- what OpenIM v3.8.4-alpha.1 and main read in a pod
    -- a folder, not subPath: kubelet's ..data swap reaches impulse's inotify watch
    assert.same({ name = "scripts", mountPath = "/etc/impulse-scripts", readOnly = true }, mounts.scripts)
    assert.equal(mounts.scripts.mountPath, env.IMENV_IMPULSE_SCRIPTS.value)
    assert.equal("openimserver-openim-push-scripts", vols.scripts.configMap.name)
    assert.same({ name = "state", mountPath = "/var/lib/impulse" }, mounts.state)
    assert.same({}, vols.state.emptyDir)
  end)

  it("puts scripts/ in the ConfigMap byte for byte, each file back at its path", function()
    local cm = one(docs, "ConfigMap")
    local files = scripts_files()
    local listed = {}
    for _, path in ipairs(VALUES.scripts.files) do listed[path] = true end
    assert.same(sorted_keys(files), sorted_keys(listed)) -- every file of scripts/, and only those
    local vol = by_name(pod(deploy).volumes).scripts.configMap
    local items = {}
    for _, it in ipairs(vol.items) do items[it.key] = it.path end
    for path, body in pairs(files) do
      local key = path:gsub("/", ".")
      assert.equal(body, cm.data[key], key)
      assert.equal(path, items[key])
    end
    assert.equal(#VALUES.scripts.files, #sorted_keys(cm.data))
  end)

  it("asks Prometheus to scrape prometheus.ports[0] through pod annotations", function()
    assert.same({ ["prometheus.io/scrape"] = "true", ["prometheus.io/port"] = "12170",
                  ["prometheus.io/path"] = "/metrics" }, deploy.spec.template.metadata.annotations)
    assert.equal(tostring(port_named(c, "metrics")), deploy.spec.template.metadata.annotations["prometheus.io/port"])
  end)
end)

describe("Helm chart with values overridden", function()
  it("swaps the image with one value and changes nothing else", function()
    local base = one(render(), "Deployment")
    local swapped = one(render({ image = { repository = "ghcr.io/openimsdk/openim-push" } }), "Deployment")
    assert.equal("ghcr.io/openimsdk/openim-push:0.1.0", container(swapped).image)
    container(swapped).image = container(base).image
    assert.same(base, swapped)
    local tagged = one(render({ image = { repository = "registry.local/impulse", tag = "v2" } }), "Deployment")
    assert.equal("registry.local/impulse:v2", container(tagged).image)
  end)

  it("adds the RBAC of Kubernetes discovery only with discovery k8s", function()
    local docs = render({ discovery = "k8s", serviceAccount = { create = true } })
    assert.same({ "ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount" }, kinds(docs))
    local deploy = one(docs, "Deployment")
    local sa, role, rb = one(docs, "ServiceAccount"), one(docs, "Role"), one(docs, "RoleBinding")
    assert.equal("kubernetes", env_of(container(deploy)).IMENV_IMPULSE_DISCOVERY.value)
    assert.same({ { apiGroups = { "" }, resources = { "endpoints" }, verbs = { "get", "list", "watch" } } },
      role.rules)
    assert.same({ apiGroup = "rbac.authorization.k8s.io", kind = "Role", name = role.metadata.name }, rb.roleRef)
    assert.same({ { kind = "ServiceAccount", name = sa.metadata.name, namespace = "openim" } }, rb.subjects)
    assert.equal(sa.metadata.name, pod(deploy).serviceAccountName)
    -- without a ServiceAccount of its own the pod runs as (and the binding names) "default"
    local docs2 = render({ discovery = "k8s" })
    assert.equal("default", one(docs2, "RoleBinding").subjects[1].name)
    assert.equal("default", pod(one(docs2, "Deployment")).serviceAccountName)
    assert.same({}, of_kind(render({ discovery = "etcd" }), "Role"))
  end)

  it("adds a ServiceMonitor on metrics-port with global.monitor.enabled, as OpenIM's chart", function()
    local docs = render({ global = { monitor = { enabled = true, additionalLabels = { team = "im" } } } })
    local sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert.equal("monitoring.coreos.com/v1", sm.apiVersion)
    assert.same({ { port = "metrics-port", path = "/metrics", interval = "15s" } }, sm.spec.endpoints)
    assert.truthy(by_name(svc.spec.ports)["metrics-port"])
    for k, v in pairs(sm.spec.selector.matchLabels) do assert.equal(v, svc.metadata.labels[k], k) end
    assert.same({ release = "kube-prometheus-stack", team = "im" }, sm.metadata.labels)
    assert.same({}, of_kind(render(), "ServiceMonitor"))
  end)

  it("takes addresses, the OpenIM release, a state claim and annotations from values", function()
    local deploy = one(render({
      extraEnv = yamldoc.seq { { name = "IMENV_KAFKA_ADDRESS", value = "kafka-0:9092,kafka-1:9092" } },
      impulse = { openim = "v3.8.3-patch.4" },
      state = { claimName = "impulse-state" },
      podAnnotations = { ["example.com/owner"] = "im" },
      metrics = { podAnnotations = false },
    }), "Deployment")
    local env = env_of(container(deploy))
    assert.equal("kafka-0:9092,kafka-1:9092", env.IMENV_KAFKA_ADDRESS.value)
    assert.equal("v3.8.3-patch.4", env.IMENV_IMPULSE_OPENIM.value)
    assert.equal("25000", env.IMENV_IMPULSE_DRAINTIMEOUTMS.value) -- impulse's keys merge, not replace
    assert.same({ persistentVolumeClaim = { claimName = "impulse-state" }, name = "state" },
      by_name(pod(deploy).volumes).state)
    assert.same({ ["example.com/owner"] = "im" }, deploy.spec.template.metadata.annotations)
  end)

  it("mounts an existing scripts ConfigMap, or none (the image's policy)", function()
    local docs = render({ scripts = { create = false, configMap = "my-policy" } })
    assert.same({ "Deployment", "Service" }, kinds(docs))
    local deploy = one(docs, "Deployment")
    assert.equal("my-policy", by_name(pod(deploy).volumes).scripts.configMap.name)
    assert.equal("/etc/impulse-scripts", env_of(container(deploy)).IMENV_IMPULSE_SCRIPTS.value)
    deploy = one(render({ scripts = { create = false } }), "Deployment")
    assert.is_nil(by_name(pod(deploy).volumes).scripts)
    assert.is_nil(by_name(container(deploy).volumeMounts).scripts)
    assert.is_nil(env_of(container(deploy)).IMENV_IMPULSE_SCRIPTS)
  end)

  it("keeps the grace period above the drain when both are raised", function()
    local deploy = one(render({ impulse = { drainTimeoutMs = 29000 }, terminationGracePeriodSeconds = 45 }),
      "Deployment")
    local drain = tonumber(env_of(container(deploy)).IMENV_IMPULSE_DRAINTIMEOUTMS.value)
    assert.equal(29000, drain)
    assert.truthy(pod(deploy).terminationGracePeriodSeconds * 1000 > drain + GUARD_MS)
  end)
end)

describe("plain manifests (deploy/kubernetes)", function()
  local plain, chart_deploy
  setup(function()
    plain = {}
    for _, name in ipairs(lines_of("ls " .. PLAIN .. "/*.yaml")) do
      for _, d in ipairs(yamldoc.load_all(read(name), name)) do plain[#plain + 1] = d end
    end
    chart_deploy = one(render(), "Deployment")
  end)

  it("hold the Deployment, Service, scripts ConfigMap, RBAC and ServiceMonitor", function()
    assert.same({ "ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor" },
      kinds(plain))
  end)

  it("keep OpenIM's own manifests' names (open-im-server deployments/deploy)", function()
    local deploy, svc = one(plain, "Deployment"), one(plain, "Service")
    assert.equal("push-rpc-server", deploy.metadata.name)
    assert.equal("push-rpc-server-container", container(deploy).name)
    assert.equal("push-rpc-service", svc.metadata.name)
    assert.same({ app = "push-rpc-server" }, svc.spec.selector)
    assert.same(deploy.spec.template.metadata.labels, svc.spec.selector)
    assert.same({ "http-10170", "prometheus-12170" }, { svc.spec.ports[1].name, svc.spec.ports[2].name })
    for _, p in ipairs(svc.spec.ports) do
      assert.equal(p.port, p.targetPort)
      local found = false
      for _, cp in ipairs(container(deploy).ports) do found = found or cp.containerPort == p.targetPort end
      assert.truthy(found, p.name)
    end
  end)

  it("run the same container as the chart", function()
    local deploy = one(plain, "Deployment")
    local c, cc = container(deploy), container(chart_deploy)
    assert.same(cc.args, c.args)
    assert.same(cc.ports, c.ports)
    assert.same(cc.readinessProbe, c.readinessProbe)
    assert.same(cc.livenessProbe, c.livenessProbe)
    assert.same(env_names(cc), env_names(c))
    assert.same(cc.volumeMounts, (function()
      -- the chart calls the config volume "config", OpenIM's manifest "openim-config"
      local out = {}
      for _, m in ipairs(c.volumeMounts) do
        local copy = {}
        for k, v in pairs(m) do copy[k] = v end
        if copy.name == "openim-config" then copy.name = "config" end
        out[#out + 1] = copy
      end
      return out
    end)())
    assert.equal(pod(chart_deploy).terminationGracePeriodSeconds, pod(deploy).terminationGracePeriodSeconds)
    assert.same(chart_deploy.spec.template.metadata.annotations, deploy.spec.template.metadata.annotations)
    local env, cenv = env_of(c), env_of(cc)
    for _, name in ipairs(env_names(c)) do
      if name ~= "IMENV_IMPULSE_DISCOVERY" then assert.same(cenv[name], env[name], name) end
    end
    -- OpenIM's manifests choose Kubernetes discovery (openim-config's discovery.yml)
    assert.equal("kubernetes", env.IMENV_IMPULSE_DISCOVERY.value)
    local vols, cvols = by_name(pod(deploy).volumes), by_name(pod(chart_deploy).volumes)
    assert.same(cvols.scripts.configMap.items, vols.scripts.configMap.items)
    assert.same(cvols.state, vols.state)
    assert.equal("openim-config", vols["openim-config"].configMap.name)
  end)

  it("bind the pod's service account to a Role reading Endpoints", function()
    local deploy, sa, role, rb = one(plain, "Deployment"), one(plain, "ServiceAccount"), one(plain, "Role"),
      one(plain, "RoleBinding")
    assert.equal(sa.metadata.name, pod(deploy).serviceAccountName)
    assert.same(one(render({ discovery = "k8s" }), "Role").rules, role.rules)
    assert.equal(role.metadata.name, rb.roleRef.name)
    assert.equal(sa.metadata.name, rb.subjects[1].name)
    assert.equal("default", rb.subjects[1].namespace)
  end)

  it("point the ServiceMonitor at the Service's metrics port", function()
    local sm, svc, deploy = one(plain, "ServiceMonitor"), one(plain, "Service"), one(plain, "Deployment")
    local port = by_name(svc.spec.ports)[sm.spec.endpoints[1].port]
    assert.truthy(port, "no Service port " .. sm.spec.endpoints[1].port)
    assert.equal(tonumber(env_of(container(deploy)).IMENV_OPENIM_PUSH_PROMETHEUS_PORTS.value), port.targetPort)
    for k, v in pairs(sm.spec.selector.matchLabels) do assert.equal(v, svc.metadata.labels[k], k) end
  end)

  it("carry scripts/ as generated (configmap-scripts.yaml)", function()
    local want = scripts_configmap(VALUES.scripts.files)
    if os.getenv("IMPULSE_WRITE_MANIFESTS") == "1" then
      local f = assert(io.open(SCRIPTS_CM, "wb"))
      f:write(want)
      f:close()
    end
    assert.equal(want, read(SCRIPTS_CM), SCRIPTS_CM .. " is stale: regenerate it (see its first lines)")
    local cm = one(plain, "ConfigMap")
    assert.same(one(render(), "ConfigMap").data, cm.data)
    assert.equal(by_name(pod(one(plain, "Deployment")).volumes).scripts.configMap.name, cm.metadata.name)
  end)
end)

describe("kubectl's own decoding (when kubectl is on PATH; no cluster needed)", function()
  local have = os.execute("command -v kubectl >/dev/null 2>&1")
  have = have == 0 or have == true

  local function kubectl_ok(args)
    local out = lines_of("kubectl " .. args .. " 2>&1; echo rc=$?")
    return out[#out] == "rc=0", table.concat(out, "\n")
  end

  if not have then
    pending("kubectl is not on PATH")
    return
  end

  it("reads the rendered chart and the plain manifests, Deployments into their types", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0 or true)
    local sets = {
      chart = select(2, render()),
      chart_k8s = select(2, render({ discovery = "k8s", serviceAccount = { create = true },
                                     global = { monitor = { enabled = true } } })),
    }
    for name, text in pairs(sets) do
      local f = assert(io.open(dir .. "/" .. name .. ".yaml", "wb"))
      f:write(text)
      f:close()
    end
    for _, file in ipairs({ dir .. "/chart.yaml", dir .. "/chart_k8s.yaml", PLAIN }) do
      local ok, out = kubectl_ok("label --local -o name -f " .. file .. " checked=yes")
      assert.truthy(ok, out)
    end
    for _, file in ipairs({ dir .. "/deploy.yaml", PLAIN .. "/deployment.yaml" }) do
      if file == dir .. "/deploy.yaml" then
        local f = assert(io.open(file, "wb"))
        f:write(gotmpl.to_yaml(one(render(), "Deployment")))
        f:close()
      end
      -- set env decodes into apps/v1 Deployment: a wrong type or field name fails
      local ok, out = kubectl_ok("set env --local -o name -f " .. file .. " CHECKED=yes")
      assert.truthy(ok, out)
    end
    os.execute("rm -rf " .. dir)
  end)
end)
