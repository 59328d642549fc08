-- impulse.msg: OpenIM's constants for message fields (openim-wire.md §2, §6).
-- Scripts compare against these names instead of bare numbers.
local _M = {}

-- MsgData.sessionType
_M.session = {
  SINGLE = 1,          -- single chat
  WRITE_GROUP = 2,     -- legacy group
  READ_GROUP = 3,      -- group chat (super group)
  NOTIFICATION = 4,    -- notification conversation
}

-- MsgData.contentType (the ones the push policy looks at)
_M.content = {
  TEXT = 101,
  PICTURE = 102,
  VOICE = 103,
  VIDEO = 104,
  FILE = 105,
  AT_TEXT = 106,
  TYPING = 113,
  MEMBER_QUIT = 1504,
  MEMBER_KICKED = 1508,
  GROUP_DISMISSED = 1511,
  SIGNALING = 1601,
  ROOM_PARTICIPANTS_CONNECTED = 1602,
  ROOM_PARTICIPANTS_DISCONNECTED = 1603,
}

-- MsgData.status
_M.status = { SENDING = 1, SENT = 2, FAILED = 3, DELETED = 4, FILTERED = 5 }

-- Platform IDs (online status, senderPlatformID)
_M.platform = {
  IOS = 1, ANDROID = 2, WINDOWS = 3, OSX = 4, WEB = 5, MINI_WEB = 6,
  LINUX = 7, ANDROID_PAD = 8, IPAD = 9, ADMIN = 10,
}

return _M
