-- impulse.config: the settings a script may read (read-only):
-- imAdminUserID, toPushTopic, toOfflinePushTopic, fullUserCache,
-- rpcTimeoutMs.
local cfg = require("impulse.core").config()

return setmetatable({}, {
  __index = cfg,
  __newindex = function(_, k) error("impulse.config is read-only (attempt to set '" .. tostring(k) .. "')", 2) end,
  __metatable = false,
})
