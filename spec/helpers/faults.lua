-- spec.helpers.faults: what the fault suite (spec/04-faults) shares on top
-- of spec.helpers: a reproducible random sequence, message streams
-- produced in batches, per-message counts at the gateways and the fake
-- providers, the loss and duplicate figures, restarts timed to /readyz,
-- and the Kafka mock's control port.
local h = require "spec.helpers"

local format = string.format
local floor = math.floor
local pairs, ipairs = pairs, ipairs

local _M = {}

-- A Park-Miller generator (exact in doubles): the same points every run,
-- whatever busted does to math.random. rng(lo, hi) -> integer in [lo, hi].
function _M.rng(seed)
  local x = seed % 2147483647
  if x <= 0 then x = x + 2147483646 end
  return function(lo, hi)
    x = x * 16807 % 2147483647
    return lo + floor((x - 1) / 2147483646 * (hi - lo + 1))
  end
end

-- {clientMsgID: pushes received} at a gateway stand-in.
function _M.gateway_counts(gateway)
  return h.http_json("GET", gateway.control .. "/counts")
end

-- {clientMsgID: requests answered 200} at the fake JPush.
function _M.jpush_counts(providers)
  return h.http_json("GET", providers.control .. "/tally?provider=jpush&field=message.extras.ClientMsgID")
end

-- The figures of ids in counts: how many are missing, how many extra
-- pushes (duplicates), the largest count, and the first few missing ids.
function _M.figures(counts, ids)
  local missing, dups, max, first = 0, 0, 0, {}
  for _, id in ipairs(ids) do
    local n = counts[id] or 0
    if n == 0 then
      missing = missing + 1
      if #first < 5 then first[#first + 1] = id end
    else
      dups = dups + n - 1
      if n > max then max = n end
    end
  end
  return { missing = missing, dups = dups, max = max, first_missing = first }
end

function _M.count_delivered(counts, ids)
  local n = 0
  for _, id in ipairs(ids) do if counts[id] then n = n + 1 end end
  return n
end

-- Waits until every id has a count (counts_fn() -> {id: n}); on timeout
-- the error says how many are missing and names a few.
function _M.wait_all(counts_fn, ids, timeout_ms, what)
  local last
  local ok, err = pcall(h.wait_until, function()
    last = counts_fn()
    return _M.figures(last, ids).missing == 0
  end, timeout_ms, what)
  if not ok then
    local f = _M.figures(last or {}, ids)
    error(format("%s; %d of %d missing (e.g. %s)", err, f.missing, #ids, table.concat(f.first_missing, ", ")), 2)
  end
  return last
end

-- A stream of single-chat messages from "system" to users[i % #users]:
-- s:produce(n) produces the next n (flushed), s.ids the clientMsgIDs so far.
function _M.stream(env, tag, users, extra)
  local s = { ids = {}, n = 0 }
  function s.produce(_, n)
    for _ = 1, n do
      s.n = s.n + 1
      local fields = { sendID = "system", recvID = users[(s.n - 1) % #users + 1],
                       clientMsgID = tag .. "-" .. s.n, options = { senderSync = false } }
      for k, v in pairs(extra or {}) do fields[k] = v end
      local m = h.push_msg(fields)
      h.produce(env, m, { no_flush = true })
      s.ids[s.n] = m.clientMsgID
    end
    env.producer:flush(60000)
  end
  return s
end

-- Starts impulse and returns it with the milliseconds it took from the
-- spawn to /readyz 200.
function _M.start_timed(env, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.no_wait = true
  local t0 = h.now_ms()
  local imp = h.start_impulse(env, o)
  h.wait_ready(imp, opts and opts.ready_timeout_ms or 90000)
  return imp, h.now_ms() - t0
end

-- SIGKILLs impulse and waits until it is gone.
function _M.kill(imp)
  h.signal(imp, h.SIGKILL)
  h.wait_until(function() return not h.alive(imp) end, 10000, "impulse to die")
  imp.stopped = true
end

-- The Kafka mock's control port (engine/tools/kafka_mock.c): sends one
-- command line, returns the reply line; raises unless it starts with "ok".
function _M.kafka_ctl(kafka, cmd)
  assert(kafka.control, "the Kafka mock was started without a control port")
  local host, port = kafka.control:match("^(.+):(%d+)$")
  local out = h.run(format("bash -c %s 2>&1", h.shell_quote(format(
    "exec 3<>/dev/tcp/%s/%s && printf '%%s\\n' %s >&3 && head -n1 <&3", host, port, h.shell_quote(cmd)))))
  out = out:gsub("%s+$", "")
  if out:sub(1, 2) ~= "ok" then error(format("kafka mock %q: %s", cmd, out), 2) end
  return out
end

-- The median and the largest of a list of numbers.
function _M.median_max(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  if #t == 0 then return 0, 0 end
  return t[floor(#t / 2) + 1], t[#t]
end

return _M
