# Turns a file into a C header holding its bytes, so the binary carries it
# (the status page, engine/daemon/status.html):
#
#   cmake -DIN=<file> -DOUT=<header> -DNAME=<symbol> -P embed.cmake
#
# writes `static const unsigned char NAME[]` (the bytes and a NUL) and
# `static const size_t NAME_len` (without the NUL), on one line. Plain
# CMake, no xxd.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR len "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
get_filename_component(from "${IN}" NAME)
file(WRITE "${OUT}.tmp"
  "/* generated from ${from} by engine/tools/embed.cmake: do not edit */\n"
  "#include <stddef.h>\n"
  "static const unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
  "static const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
