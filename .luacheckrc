-- luacheck configuration: LuaJIT everywhere, busted globals in specs.
std = "luajit"
codes = true
max_line_length = 120
exclude_files = { "**/node_modules/**", "build*/**" }

files["spec/**/*_spec.lua"] = { std = "+busted" }
files["examples/**/*_spec.lua"] = { std = "+busted" }
files["bench/**/*_spec.lua"] = { std = "+busted" }
