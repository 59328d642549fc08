-- A LuaJIT FFI binding to librdkafka (>= 2.0) for tests: a producer that
-- waits for every delivery report, a group consumer, a group-less reader of
-- everything on a topic, and an in-process mock cluster for unit specs.
--
-- Design:
--  * Producing goes through rd_kafka_produceva(), the array form of
--    rd_kafka_producev() (exported since librdkafka 1.4, present in 2.0.2):
--    the varargs producev cannot be called reliably through the FFI, and
--    plain rd_kafka_produce() cannot attach headers. Headers are built as
--    an rd_kafka_headers_t list and passed with RD_KAFKA_VTYPE_HEADERS
--    rather than as several RD_KAFKA_VTYPE_HEADER entries: the ownership of
--    an application list is explicit (the message owns it after success, we
--    still own it after failure), while produceva's internally built list
--    is freed twice when the partitioner rejects an explicit partition
--    (rd_kafka_msg_destroy frees it, then the error path frees it again):
--    measured with 2.0.2, VTYPE_HEADER + partition 99 of a 2-partition
--    topic segfaults; VTYPE_HEADERS returns "Unknown partition" cleanly.
--  * Delivery reports use the event API (RD_KAFKA_EVENT_DR delivered to the
--    main queue, read with rd_kafka_queue_poll), not rd_kafka_conf_set_
--    dr_msg_cb: no FFI callback is ever called from a librdkafka thread, or
--    at all.
--  * Every error raises with librdkafka's error string. Objects are closed
--    explicitly; a __gc safety net (ffi.gc) destroys a forgotten handle
--    without a consumer close, so garbage collection never blocks on a
--    group leave.
--
-- Ownership rules relied on (librdkafka's documentation of each call):
--  * rd_kafka_conf_t: ours until rd_kafka_new() succeeds, which takes it;
--    after a failed rd_kafka_new() we must destroy it.
--  * rd_kafka_headers_new(): ours; rd_kafka_header_add() copies name and
--    value. Passed as VTYPE_HEADERS to produceva: owned by the message when
--    produceva returns NULL, still ours when it returns an error.
--  * rd_kafka_error_t returned by produceva: ours, rd_kafka_error_destroy().
--  * Key: always copied by librdkafka. Value: copied because we pass
--    RD_KAFKA_MSG_F_COPY (Lua strings move and die with the GC). The topic
--    name is only read during the call. The Lua strings stored as pointers
--    in the rd_kafka_vu_t array are kept alive by the function's arguments
--    until produceva returns.
--  * rd_kafka_queue_get_main(): a new reference, rd_kafka_queue_destroy()
--    before rd_kafka_destroy().
--  * rd_kafka_event_t from rd_kafka_queue_poll(): ours,
--    rd_kafka_event_destroy(). The messages rd_kafka_event_message_next()
--    returns belong to the event: never destroyed by us, copied out before
--    the event is destroyed.
--  * rd_kafka_message_t from rd_kafka_consumer_poll(): ours,
--    rd_kafka_message_destroy(). Its headers (rd_kafka_message_headers) and
--    the name/value pointers of rd_kafka_header_get_all() belong to the
--    message: copied before it is destroyed, never freed.
--  * rd_kafka_topic_partition_list_t: ours; subscribe() and assign() copy it.
--  * rd_kafka_metadata(): result freed with rd_kafka_metadata_destroy().
--  * rd_kafka_topic_new(): ours, rd_kafka_topic_destroy().
--  * rd_kafka_mock_cluster_bootstraps(): borrowed from the cluster, copied.
--    The cluster must be destroyed before the rd_kafka_t it was made on.

local ffi = require "ffi"

local C = ffi.C
local ffi_string, ffi_gc, ffi_cast, ffi_errno =
    ffi.string, ffi.gc, ffi.cast, ffi.errno
local type, pairs, ipairs, error, tostring, tonumber, pcall, setmetatable =
    type, pairs, ipairs, error, tostring, tonumber, pcall, setmetatable
local format, find = string.format, string.find
local floor, random = math.floor, math.random
local concat, sort = table.concat, table.sort

local _M = {}

-- Each declaration on its own, so that a declaration another module in the
-- same VM already made (ffi's C namespace is global) is skipped instead of
-- failing the whole block.
local DECLS = {
  [[typedef struct rd_kafka_s rd_kafka_t;]],
  [[typedef struct rd_kafka_conf_s rd_kafka_conf_t;]],
  [[typedef struct rd_kafka_topic_s rd_kafka_topic_t;]],
  [[typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;]],
  [[typedef struct rd_kafka_queue_s rd_kafka_queue_t;]],
  [[typedef struct rd_kafka_op_s rd_kafka_event_t;]],
  [[typedef struct rd_kafka_headers_s rd_kafka_headers_t;]],
  [[typedef struct rd_kafka_error_s rd_kafka_error_t;]],
  [[typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;]],
  [[typedef int rd_kafka_resp_err_t;]],
  [[typedef int rd_kafka_event_type_t;]],
  [[typedef struct rd_kafka_message_s {
      rd_kafka_resp_err_t err;
      rd_kafka_topic_t *rkt;
      int32_t partition;
      void *payload;
      size_t len;
      void *key;
      size_t key_len;
      int64_t offset;
      void *_private;
    } rd_kafka_message_t;]],
  [[typedef struct rd_kafka_topic_partition_s {
      char *topic;
      int32_t partition;
      int64_t offset;
      void *metadata;
      size_t metadata_size;
      void *opaque;
      rd_kafka_resp_err_t err;
      void *_private;
    } rd_kafka_topic_partition_t;]],
  [[typedef struct rd_kafka_topic_partition_list_s {
      int cnt;
      int size;
      rd_kafka_topic_partition_t *elems;
    } rd_kafka_topic_partition_list_t;]],
  [[typedef struct rd_kafka_metadata_broker {
      int32_t id;
      char *host;
      int port;
    } rd_kafka_metadata_broker_t;]],
  [[typedef struct rd_kafka_metadata_partition {
      int32_t id;
      rd_kafka_resp_err_t err;
      int32_t leader;
      int replica_cnt;
      int32_t *replicas;
      int isr_cnt;
      int32_t *isrs;
    } rd_kafka_metadata_partition_t;]],
  [[typedef struct rd_kafka_metadata_topic {
      char *topic;
      int partition_cnt;
      struct rd_kafka_metadata_partition *partitions;
      rd_kafka_resp_err_t err;
    } rd_kafka_metadata_topic_t;]],
  [[typedef struct rd_kafka_metadata {
      int broker_cnt;
      struct rd_kafka_metadata_broker *brokers;
      int topic_cnt;
      struct rd_kafka_metadata_topic *topics;
      int32_t orig_broker_id;
      char *orig_broker_name;
    } rd_kafka_metadata_t;]],
  -- rdkafka.h: enum vtype followed by a union padded to 64 bytes.
  [[typedef struct rd_kafka_vu_s {
      int vtype;
      union {
        const char *cstr;
        rd_kafka_topic_t *rkt;
        int i;
        int32_t i32;
        int64_t i64;
        struct { void *ptr; size_t size; } mem;
        struct { const char *name; const void *val; ssize_t size; } header;
        rd_kafka_headers_t *headers;
        void *ptr;
        char _pad[64];
      } u;
    } rd_kafka_vu_t;]],
  [[int rd_kafka_version(void);]],
  [[const char *rd_kafka_err2str(rd_kafka_resp_err_t err);]],
  [[rd_kafka_conf_t *rd_kafka_conf_new(void);]],
  [[void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);]],
  [[int rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name,
      const char *value, char *errstr, size_t errstr_size);]],
  [[void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int events);]],
  [[rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *conf, char *errstr,
      size_t errstr_size);]],
  [[void rd_kafka_destroy(rd_kafka_t *rk);]],
  [[void rd_kafka_destroy_flags(rd_kafka_t *rk, int flags);]],
  [[rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);]],
  [[void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);]],
  [[rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu,
      int timeout_ms);]],
  [[rd_kafka_event_type_t rd_kafka_event_type(const rd_kafka_event_t *rkev);]],
  [[void rd_kafka_event_destroy(rd_kafka_event_t *rkev);]],
  [[const rd_kafka_message_t *rd_kafka_event_message_next(
      rd_kafka_event_t *rkev);]],
  [[rd_kafka_resp_err_t rd_kafka_event_error(rd_kafka_event_t *rkev);]],
  [[const char *rd_kafka_event_error_string(rd_kafka_event_t *rkev);]],
  [[int rd_kafka_event_error_is_fatal(rd_kafka_event_t *rkev);]],
  [[rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count);]],
  [[void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs);]],
  [[rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs,
      const char *name, ssize_t name_size, const void *value,
      ssize_t value_size);]],
  [[rd_kafka_resp_err_t rd_kafka_header_get_all(const rd_kafka_headers_t *hdrs,
      size_t idx, const char **namep, const void **valuep, size_t *sizep);]],
  [[rd_kafka_error_t *rd_kafka_produceva(rd_kafka_t *rk,
      const rd_kafka_vu_t *vus, size_t cnt);]],
  [[const char *rd_kafka_error_string(const rd_kafka_error_t *error);]],
  [[rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);]],
  [[void rd_kafka_error_destroy(rd_kafka_error_t *error);]],
  [[const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);]],
  [[rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic,
      rd_kafka_topic_conf_t *conf);]],
  [[void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);]],
  [[void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage);]],
  [[const char *rd_kafka_message_errstr(const rd_kafka_message_t *rkmessage);]],
  [[int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage,
      int *tstype);]],
  [[rd_kafka_resp_err_t rd_kafka_message_headers(
      const rd_kafka_message_t *rkmessage, rd_kafka_headers_t **hdrsp);]],
  [[rd_kafka_resp_err_t rd_kafka_poll_set_consumer(rd_kafka_t *rk);]],
  [[rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *rk,
      int timeout_ms);]],
  [[rd_kafka_resp_err_t rd_kafka_consumer_close(rd_kafka_t *rk);]],
  [[rd_kafka_resp_err_t rd_kafka_subscribe(rd_kafka_t *rk,
      const rd_kafka_topic_partition_list_t *topics);]],
  [[rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk,
      const rd_kafka_topic_partition_list_t *partitions);]],
  [[rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(
      int size);]],
  [[void rd_kafka_topic_partition_list_destroy(
      rd_kafka_topic_partition_list_t *rkparlist);]],
  [[rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(
      rd_kafka_topic_partition_list_t *rktparlist, const char *topic,
      int32_t partition);]],
  [[rd_kafka_resp_err_t rd_kafka_metadata(rd_kafka_t *rk, int all_topics,
      rd_kafka_topic_t *only_rkt, const struct rd_kafka_metadata **metadatap,
      int timeout_ms);]],
  [[void rd_kafka_metadata_destroy(const struct rd_kafka_metadata *metadata);]],
  [[rd_kafka_mock_cluster_t *rd_kafka_mock_cluster_new(rd_kafka_t *rk,
      int broker_cnt);]],
  [[void rd_kafka_mock_cluster_destroy(rd_kafka_mock_cluster_t *mcluster);]],
  [[const char *rd_kafka_mock_cluster_bootstraps(
      const rd_kafka_mock_cluster_t *mcluster);]],
  [[rd_kafka_resp_err_t rd_kafka_mock_topic_create(
      rd_kafka_mock_cluster_t *mcluster, const char *topic, int partition_cnt,
      int replication_factor);]],
  [[struct timespec { long tv_sec; long tv_nsec; };]],
  [[int clock_gettime(int clk_id, struct timespec *tp);]],
}

for _, d in ipairs(DECLS) do
  local ok, err = pcall(ffi.cdef, d)
  if not ok and not find(tostring(err), "redefin", 1, true) then
    error("kafka helper: ffi.cdef failed: " .. tostring(err) .. "\n" .. d)
  end
end

local function load_lib()
  local errs = {}
  for _, name in ipairs { "rdkafka", "librdkafka.so.1" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then
      return lib
    end
    errs[#errs + 1] = tostring(lib)
  end
  error("kafka helper: cannot load librdkafka: " .. concat(errs, "; "))
end

local K = load_lib()
_M.lib = K

-- Constants from rdkafka.h (2.0.2).
local RD_KAFKA_PRODUCER = 0
local RD_KAFKA_CONSUMER = 1
local RD_KAFKA_CONF_OK = 0
local RD_KAFKA_EVENT_DR = 0x1
local RD_KAFKA_EVENT_ERROR = 0x8
local RD_KAFKA_PARTITION_UA = -1
local RD_KAFKA_OFFSET_BEGINNING = -2
local RD_KAFKA_MSG_F_COPY = 0x2
local RD_KAFKA_RESP_ERR__PARTITION_EOF = -191
local RD_KAFKA_RESP_ERR__NOENT = -156
local RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE = 0x8
local VTYPE_TOPIC, VTYPE_PARTITION, VTYPE_VALUE, VTYPE_KEY, VTYPE_MSGFLAGS,
      VTYPE_HEADERS = 1, 3, 4, 5, 7, 10
local CLOCK_MONOTONIC = 1

_M.PARTITION_UA = RD_KAFKA_PARTITION_UA

local vu_array_t = ffi.typeof "rd_kafka_vu_t[?]"
local errstr_t = ffi.typeof "char[?]"
local timespec_t = ffi.typeof "struct timespec"
local hdrs_ptr_t = ffi.typeof "rd_kafka_headers_t *[1]"
local cstr_ptr_t = ffi.typeof "const char *[1]"
local void_ptr_t = ffi.typeof "const void *[1]"
local size_ptr_t = ffi.typeof "size_t[1]"
local int_ptr_t = ffi.typeof "int[1]"
local md_ptr_t = ffi.typeof "const struct rd_kafka_metadata *[1]"

--- Monotonic milliseconds (for poll deadlines).
local function now_ms()
  local ts = timespec_t()
  if C.clock_gettime(CLOCK_MONOTONIC, ts) ~= 0 then
    error("clock_gettime failed: errno " .. ffi_errno())
  end
  return tonumber(ts.tv_sec) * 1000 + floor(tonumber(ts.tv_nsec) / 1e6)
end
_M.now_ms = now_ms

local function err2str(err)
  return ffi_string(K.rd_kafka_err2str(err))
end

local function fail(what, err)
  error(format("kafka: %s: %s (%d)", what, err2str(err), tonumber(err)), 3)
end

--- librdkafka's version string, e.g. "2.0.2".
function _M.version()
  local v = K.rd_kafka_version()
  return format("%d.%d.%d", floor(v / 2 ^ 24) % 256, floor(v / 2 ^ 16) % 256,
                floor(v / 2 ^ 8) % 256)
end

-- Build an rd_kafka_conf_t from a flat {name = value} table. Values are
-- converted with tostring (numbers, booleans). Keys are applied in sorted
-- order so errors are reproducible. Raises (after freeing the conf).
local function make_conf(props, level)
  local conf = K.rd_kafka_conf_new()
  local errbuf = errstr_t(512)
  local keys = {}
  for k in pairs(props) do
    keys[#keys + 1] = k
  end
  sort(keys)
  for _, k in ipairs(keys) do
    local v = props[k]
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number"
        and type(v) ~= "boolean") then
      K.rd_kafka_conf_destroy(conf)
      error(format("bad config entry %s = %s", tostring(k), tostring(v)),
            level + 1)
    end
    if K.rd_kafka_conf_set(conf, k, tostring(v), errbuf, 512)
        ~= RD_KAFKA_CONF_OK then
      local msg = ffi_string(errbuf)
      K.rd_kafka_conf_destroy(conf)
      error(format("kafka: config %s = %s: %s", k, tostring(v), msg),
            level + 1)
    end
  end
  return conf
end

-- rd_kafka_new; takes conf (freed here on failure). Returns the handle with
-- a __gc safety net.
local function new_handle(kind, conf, level)
  local errbuf = errstr_t(512)
  local rk = K.rd_kafka_new(kind, conf, errbuf, 512)
  if rk == nil then
    K.rd_kafka_conf_destroy(conf)
    error("kafka: rd_kafka_new: " .. ffi_string(errbuf), level + 1)
  end
  return rk
end

local function merge(dst, src)
  if src then
    for k, v in pairs(src) do
      dst[k] = v
    end
  end
  return dst
end

local function check_opts(fname, opts)
  if type(opts) ~= "table" then
    error(format("bad argument #1 to '%s' (table expected, got %s)", fname,
                 type(opts)), 3)
  end
  if type(opts.bootstrap) ~= "string" or opts.bootstrap == "" then
    error(format("bad argument #1 to '%s' (bootstrap: non-empty string "
                 .. "expected)", fname), 3)
  end
  if opts.config ~= nil and type(opts.config) ~= "table" then
    error(format("bad argument #1 to '%s' (config: table expected)", fname), 3)
  end
end

-- Copy a consumed message (ours or an event's) into a Lua record.
local function to_record(m)
  local rec = {
    topic = m.rkt ~= nil and ffi_string(K.rd_kafka_topic_name(m.rkt)) or nil,
    partition = tonumber(m.partition),
    offset = tonumber(m.offset),
    key = m.key ~= nil and ffi_string(m.key, m.key_len) or nil,
    value = m.payload ~= nil and ffi_string(m.payload, m.len) or nil,
    headers = {},
  }
  local tstype = int_ptr_t()
  local ts = K.rd_kafka_message_timestamp(m, tstype)
  if ts >= 0 then
    rec.timestamp = tonumber(ts)
  end
  local hdrs = hdrs_ptr_t()
  local herr = K.rd_kafka_message_headers(m, hdrs)
  if herr == 0 then
    local namep, valp, sizep = cstr_ptr_t(), void_ptr_t(), size_ptr_t()
    local idx = 0
    while K.rd_kafka_header_get_all(hdrs[0], idx, namep, valp, sizep) == 0 do
      local value
      if valp[0] ~= nil then
        value = ffi_string(valp[0], sizep[0])
      end
      rec.headers[idx + 1] = { ffi_string(namep[0]), value }
      idx = idx + 1
    end
  elseif herr ~= RD_KAFKA_RESP_ERR__NOENT then
    fail("rd_kafka_message_headers", herr)
  end
  return rec
end

---------------------------------------------------------------------------
-- Producer
---------------------------------------------------------------------------

local Producer = {}
Producer.__index = Producer
function Producer:__tostring()
  return format("kafka.producer(%s, %d outstanding)",
                self.rk and "open" or "closed", self.outstanding)
end

--- Create a producer.
-- opts.bootstrap   "host:port[,...]" (required)
-- opts.partitioner librdkafka partitioner name ("fnv1a", "murmur2_random",
--                  "consistent_random", ...); default librdkafka's
-- opts.config      extra librdkafka properties
function _M.producer(opts)
  check_opts("producer", opts)
  local props = merge({
    ["bootstrap.servers"] = opts.bootstrap,
    ["client.id"] = "impulse-spec-producer",
    ["linger.ms"] = 0,
  }, opts.config)
  if opts.partitioner ~= nil then
    props.partitioner = opts.partitioner
  end
  local conf = make_conf(props, 2)
  K.rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR + RD_KAFKA_EVENT_ERROR)
  local rk = new_handle(RD_KAFKA_PRODUCER, conf, 2)
  local queue = K.rd_kafka_queue_get_main(rk)
  local self = setmetatable({
    rk = ffi_gc(rk, function(p)
      K.rd_kafka_queue_destroy(queue)
      K.rd_kafka_destroy(p)
    end),
    queue = queue,
    outstanding = 0,
    reports = {}, -- delivery results since the last flush
    failures = {},
    errors = {}, -- non-fatal client errors seen (strings)
  }, Producer)
  return self
end

local function check_open(self, what)
  if not self.rk then
    error(what .. ": closed", 3)
  end
end

local function opt_string(v, n, what)
  if v ~= nil and type(v) ~= "string" then
    error(format("bad argument #%d to 'produce' (%s: string or nil expected, "
                 .. "got %s)", n, what, type(v)), 3)
  end
end

--- Produce one record (asynchronously; flush() waits for the reports).
-- topic: string; key, value: string or nil; headers: nil or an array of
-- {name, value} pairs kept in order (value string or nil);
-- partition: nil for the partitioner, or a partition number.
function Producer:produce(topic, key, value, headers, partition)
  check_open(self, "produce")
  if type(topic) ~= "string" or topic == "" then
    error("bad argument #1 to 'produce' (topic: non-empty string expected)", 2)
  end
  opt_string(key, 2, "key")
  opt_string(value, 3, "value")
  if headers ~= nil and type(headers) ~= "table" then
    error("bad argument #4 to 'produce' (headers: array expected)", 2)
  end
  if partition ~= nil and (type(partition) ~= "number"
      or partition ~= floor(partition) or partition < -1) then
    error("bad argument #5 to 'produce' (partition: integer expected)", 2)
  end

  local vus = vu_array_t(6)
  local n = 0
  local function add(vtype)
    local vu = vus[n]
    vu.vtype = vtype
    n = n + 1
    return vu
  end
  add(VTYPE_TOPIC).u.cstr = topic
  add(VTYPE_PARTITION).u.i32 = partition or RD_KAFKA_PARTITION_UA
  add(VTYPE_MSGFLAGS).u.i = RD_KAFKA_MSG_F_COPY
  if key ~= nil then
    local vu = add(VTYPE_KEY)
    vu.u.mem.ptr = ffi_cast("void *", key)
    vu.u.mem.size = #key
  end
  if value ~= nil then
    local vu = add(VTYPE_VALUE)
    vu.u.mem.ptr = ffi_cast("void *", value)
    vu.u.mem.size = #value
  end
  local hdrs
  if headers ~= nil and #headers > 0 then
    hdrs = K.rd_kafka_headers_new(#headers)
    for i, h in ipairs(headers) do
      local name, val
      if type(h) == "table" then
        name, val = h[1], h[2]
      end
      if type(name) ~= "string" or (val ~= nil and type(val) ~= "string") then
        K.rd_kafka_headers_destroy(hdrs)
        error(format("bad argument #4 to 'produce' (headers[%d]: {name, "
                     .. "value} of strings expected)", i), 2)
      end
      -- a nil value is a null header (NULL, size 0)
      local herr = K.rd_kafka_header_add(hdrs, name, #name, val,
                                         val and #val or 0)
      if herr ~= 0 then
        K.rd_kafka_headers_destroy(hdrs)
        fail("rd_kafka_header_add", herr)
      end
    end
    add(VTYPE_HEADERS).u.headers = hdrs
  end

  local e = K.rd_kafka_produceva(self.rk, vus, n)
  if e ~= nil then
    -- Failure: the headers list is still ours.
    if hdrs then
      K.rd_kafka_headers_destroy(hdrs)
    end
    local msg = ffi_string(K.rd_kafka_error_string(e))
    local code = tonumber(K.rd_kafka_error_code(e))
    K.rd_kafka_error_destroy(e)
    error(format("kafka: produce to %s: %s (%d)", topic, msg, code), 2)
  end
  -- Success: the message owns hdrs. `topic`, `key` and `value` (referenced
  -- by pointer in vus) stayed alive as arguments until here.
  self.outstanding = self.outstanding + 1
end

-- Serve one event from the main queue; returns true if one was served.
local function serve_event(self, timeout_ms)
  local ev = K.rd_kafka_queue_poll(self.queue, timeout_ms)
  if ev == nil then
    return false
  end
  local etype = K.rd_kafka_event_type(ev)
  if etype == RD_KAFKA_EVENT_DR then
    while true do
      local m = K.rd_kafka_event_message_next(ev)
      if m == nil then
        break
      end
      self.outstanding = self.outstanding - 1
      local report = {
        topic = ffi_string(K.rd_kafka_topic_name(m.rkt)),
        partition = tonumber(m.partition),
        offset = tonumber(m.offset),
        key = m.key ~= nil and ffi_string(m.key, m.key_len) or nil,
      }
      if m.err ~= 0 then
        -- Not rd_kafka_message_errstr(): for a delivery report it returns
        -- the payload (our value, not NUL-terminated) as the "error".
        report.err = err2str(m.err)
        self.failures[#self.failures + 1] = report
      end
      self.reports[#self.reports + 1] = report
    end
  elseif etype == RD_KAFKA_EVENT_ERROR then
    local msg = ffi_string(K.rd_kafka_event_error_string(ev))
    if K.rd_kafka_event_error_is_fatal(ev) ~= 0 then
      K.rd_kafka_event_destroy(ev)
      error("kafka: fatal producer error: " .. msg, 3)
    end
    self.errors[#self.errors + 1] = msg
  end
  K.rd_kafka_event_destroy(ev)
  return true
end

--- Wait until every produced record has its delivery report.
-- Raises on timeout or if any delivery failed (with librdkafka's error
-- string); otherwise returns the delivery reports since the last flush:
-- {topic, partition, offset, key}.
function Producer:flush(timeout_ms)
  check_open(self, "flush")
  timeout_ms = timeout_ms or 10000
  local deadline = now_ms() + timeout_ms
  while self.outstanding > 0 do
    local left = deadline - now_ms()
    if left <= 0 then
      error(format("kafka: flush: %d delivery report(s) missing after %d ms%s",
                   self.outstanding, timeout_ms,
                   #self.errors > 0 and " (last error: "
                   .. self.errors[#self.errors] .. ")" or ""), 2)
    end
    serve_event(self, left < 100 and left or 100)
  end
  -- Drain error events already queued without blocking.
  while serve_event(self, 0) do end
  local reports, failures = self.reports, self.failures
  self.reports, self.failures = {}, {}
  if #failures > 0 then
    local f = failures[1]
    error(format("kafka: %d of %d deliveries failed; first: %s [%d]: %s",
                 #failures, #reports, f.topic, f.partition, f.err), 2)
  end
  return reports
end

--- Destroy the producer (undelivered records are dropped: flush first).
function Producer:close()
  if not self.rk then
    return
  end
  K.rd_kafka_queue_destroy(self.queue)
  self.queue = nil
  local rk = ffi_gc(self.rk, nil)
  self.rk = nil
  K.rd_kafka_destroy(rk)
end

---------------------------------------------------------------------------
-- Consumers
---------------------------------------------------------------------------

local Consumer = {}
Consumer.__index = Consumer
function Consumer:__tostring()
  return format("kafka.consumer(%s)", self.rk and "open" or "closed")
end

local function consumer_gc(rk)
  -- Never block the GC on a group leave.
  K.rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
end

local function new_consumer(props, level)
  local conf = make_conf(props, level + 1)
  local rk = new_handle(RD_KAFKA_CONSUMER, conf, level + 1)
  rk = ffi_gc(rk, consumer_gc)
  local err = K.rd_kafka_poll_set_consumer(rk)
  if err ~= 0 then
    error("kafka: rd_kafka_poll_set_consumer: " .. err2str(err), level + 1)
  end
  return setmetatable({ rk = rk }, Consumer)
end

--- A group consumer subscribed to opts.topics.
-- opts.bootstrap, opts.group (required), opts.topics (array, required),
-- opts.offset_reset ("earliest" default, "latest"), opts.config.
-- The defaults suit librdkafka's mock cluster: session.timeout.ms 6000,
-- heartbeat.interval.ms 1000 (the mock needs a session timeout above
-- 3000 ms; its first group join takes about 3 s).
function _M.consumer(opts)
  check_opts("consumer", opts)
  if type(opts.group) ~= "string" or opts.group == "" then
    error("bad argument #1 to 'consumer' (group: non-empty string expected)",
          2)
  end
  if type(opts.topics) ~= "table" or #opts.topics == 0 then
    error("bad argument #1 to 'consumer' (topics: non-empty array expected)",
          2)
  end
  local c = new_consumer(merge({
    ["bootstrap.servers"] = opts.bootstrap,
    ["group.id"] = opts.group,
    ["client.id"] = "impulse-spec-consumer",
    ["auto.offset.reset"] = opts.offset_reset or "earliest",
    ["session.timeout.ms"] = 6000,
    ["heartbeat.interval.ms"] = 1000,
    ["enable.partition.eof"] = false,
  }, opts.config), 2)
  local list = K.rd_kafka_topic_partition_list_new(#opts.topics)
  for _, t in ipairs(opts.topics) do
    K.rd_kafka_topic_partition_list_add(list, t, RD_KAFKA_PARTITION_UA)
  end
  local err = K.rd_kafka_subscribe(c.rk, list)
  K.rd_kafka_topic_partition_list_destroy(list)
  if err ~= 0 then
    c:close()
    error("kafka: subscribe: " .. err2str(err), 2)
  end
  return c
end

--- Poll for one record: nil on timeout or partition EOF, else a record
-- {topic, partition, offset, key, value, headers = {{name, value}, ...},
-- timestamp}. Raises on any other consumer error.
function Consumer:poll(timeout_ms)
  check_open(self, "poll")
  local m = K.rd_kafka_consumer_poll(self.rk, timeout_ms or 1000)
  if m == nil then
    return nil
  end
  local err = m.err
  if err ~= 0 then
    local partition = tonumber(m.partition)
    -- For consumer errors the payload holds librdkafka's NUL-terminated
    -- error text, which rd_kafka_message_errstr() returns.
    local msg = ffi_string(K.rd_kafka_message_errstr(m))
    K.rd_kafka_message_destroy(m)
    if err == RD_KAFKA_RESP_ERR__PARTITION_EOF then
      return nil, "eof", partition
    end
    error(format("kafka: consume: %s (%s)", msg, err2str(err)), 2)
  end
  local ok, rec = pcall(to_record, m)
  K.rd_kafka_message_destroy(m)
  if not ok then
    error(rec, 2)
  end
  return rec
end

--- Leave the group (if any) and destroy the consumer.
function Consumer:close()
  if not self.rk then
    return
  end
  local rk = ffi_gc(self.rk, nil)
  self.rk = nil
  K.rd_kafka_consumer_close(rk)
  K.rd_kafka_destroy(rk)
end

-- Number of partitions of a topic, from a metadata request.
local function partition_count(rk, topic, timeout_ms)
  local rkt = K.rd_kafka_topic_new(rk, topic, nil)
  if rkt == nil then
    error("kafka: rd_kafka_topic_new(" .. topic .. ") failed", 3)
  end
  local mdp = md_ptr_t()
  local err = K.rd_kafka_metadata(rk, 0, rkt, mdp, timeout_ms)
  K.rd_kafka_topic_destroy(rkt)
  if err ~= 0 then
    error("kafka: metadata for " .. topic .. ": " .. err2str(err), 3)
  end
  local md = mdp[0]
  local n, terr
  for i = 0, md.topic_cnt - 1 do
    local t = md.topics[i]
    if ffi_string(t.topic) == topic then
      n, terr = t.partition_cnt, t.err
    end
  end
  K.rd_kafka_metadata_destroy(md)
  if n == nil then
    error("kafka: metadata for " .. topic .. ": topic missing from reply", 3)
  end
  if terr ~= 0 then
    error("kafka: metadata for " .. topic .. ": " .. err2str(terr), 3)
  end
  return n
end

--- Partition count of a topic.
function _M.partitions(opts)
  check_opts("partitions", opts)
  local c = new_consumer(merge({
    ["bootstrap.servers"] = opts.bootstrap,
    ["group.id"] = "impulse-spec-meta",
  }, opts.config), 2)
  local ok, n = pcall(partition_count, c.rk, opts.topic, opts.timeout_ms or
                      10000)
  c:close()
  if not ok then
    error(n, 2)
  end
  return n
end

--- Read every record currently on a topic: all partitions assigned from the
-- beginning (no group membership, no commits), until each partition
-- reports EOF. Returns the records in arrival order (per partition in
-- offset order). Raises on timeout (opts.timeout_ms, default 10000).
-- librdkafka 2.0.2 needs a group.id even for assign() (without one,
-- assign() and consumer_poll() fail with "Local: Unknown group", measured);
-- a random one is used, it never joins a group or commits.
function _M.read_all(opts)
  check_opts("read_all", opts)
  if type(opts.topic) ~= "string" or opts.topic == "" then
    error("bad argument #1 to 'read_all' (topic: non-empty string expected)",
          2)
  end
  local timeout_ms = opts.timeout_ms or 10000
  local deadline = now_ms() + timeout_ms
  local c = new_consumer(merge({
    ["bootstrap.servers"] = opts.bootstrap,
    ["group.id"] = format("impulse-spec-read-all-%d-%d", now_ms(),
                          random(1, 1e9)),
    ["client.id"] = "impulse-spec-read-all",
    ["enable.auto.commit"] = false,
    ["enable.auto.offset.store"] = false,
    ["enable.partition.eof"] = true,
  }, opts.config), 2)
  local ok, res = pcall(function()
    local n = partition_count(c.rk, opts.topic, timeout_ms)
    local list = K.rd_kafka_topic_partition_list_new(n)
    for p = 0, n - 1 do
      local tp = K.rd_kafka_topic_partition_list_add(list, opts.topic, p)
      tp.offset = RD_KAFKA_OFFSET_BEGINNING
    end
    local err = K.rd_kafka_assign(c.rk, list)
    K.rd_kafka_topic_partition_list_destroy(list)
    if err ~= 0 then
      error("kafka: assign: " .. err2str(err), 0)
    end
    local records, eof, neof = {}, {}, 0
    while neof < n do
      local left = deadline - now_ms()
      if left <= 0 then
        error(format("kafka: read_all(%s): only %d of %d partitions reached "
                     .. "EOF within %d ms (%d records read)", opts.topic,
                     neof, n, timeout_ms, #records), 0)
      end
      local rec, what, p = c:poll(left < 100 and left or 100)
      if rec then
        records[#records + 1] = rec
        if eof[rec.partition] then
          -- a record arrived after EOF: that partition is not done yet
          eof[rec.partition] = nil
          neof = neof - 1
        end
      elseif what == "eof" and not eof[p] then
        eof[p] = true
        neof = neof + 1
      end
    end
    return records
  end)
  c:close()
  if not ok then
    error(res, 2)
  end
  return res
end

---------------------------------------------------------------------------
-- In-process mock cluster (unit specs only)
---------------------------------------------------------------------------

--- Start librdkafka's mock cluster in this process.
-- opts.brokers (default 1), opts.topics = {{name, partitions}, ...}.
-- Returns {bootstrap = "127.0.0.1:port,...", close = fn}.
function _M.mock_cluster(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'mock_cluster' (table expected)", 2)
  end
  local brokers = opts.brokers or 1
  -- The mock cluster runs its own threads; it only needs a handle to be
  -- created on. Keep that handle quiet and off the network.
  local conf = make_conf({ ["client.id"] = "impulse-spec-mock",
                           ["log_level"] = 3 }, 2)
  local rk = new_handle(RD_KAFKA_PRODUCER, conf, 2)
  local mc = K.rd_kafka_mock_cluster_new(rk, brokers)
  if mc == nil then
    K.rd_kafka_destroy(rk)
    error("kafka: rd_kafka_mock_cluster_new failed", 2)
  end
  -- Safety net: a spec that dies before close() must not leave the
  -- cluster's threads running into process exit (that can crash the exit).
  mc = ffi_gc(mc, function(p)
    K.rd_kafka_mock_cluster_destroy(p)
    K.rd_kafka_destroy(rk)
  end)
  local self = { bootstrap = ffi_string(K.rd_kafka_mock_cluster_bootstraps(mc)) }
  local closed = false
  function self.close()
    if closed then
      return
    end
    closed = true
    ffi_gc(mc, nil)
    K.rd_kafka_mock_cluster_destroy(mc)
    K.rd_kafka_destroy(rk)
  end
  for i, t in ipairs(opts.topics or {}) do
    if type(t) ~= "table" or type(t[1]) ~= "string"
        or type(t[2]) ~= "number" or t[2] < 1 then
      self.close()
      error(format("bad argument #1 to 'mock_cluster' (topics[%d]: "
                   .. "{name, partitions} expected)", i), 2)
    end
    local err = K.rd_kafka_mock_topic_create(mc, t[1], t[2], 1)
    if err ~= 0 then
      self.close()
      error(format("kafka: mock topic %s: %s", t[1], err2str(err)), 2)
    end
  end
  return self
end

-- FNV-1a 32 as OpenIM's producer (Sarama's hash partitioner) computes it,
-- as int32(h): h * 16777619 mod 2^32 is (h << 24) + h * 403, every term
-- exact in a double, bit.tobit reducing modulo 2^32.
function _M.fnv1a32(s)
  local bit = require "bit"
  local h = bit.tobit(0x811c9dc5)
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return h
end

-- The partition OpenIM's producer picks: abs(int32(h) % n), Go's
-- truncated remainder.
function _M.openim_partition(key, n)
  return math.abs(math.fmod(_M.fnv1a32(key), n))
end

return _M
