#!/bin/sh
# prebuildify always runs node-gyp; this stands in for it and builds with cmake-js (node-gyp's arguments are ignored).
exec "$(dirname "$0")/../node_modules/.bin/cmake-js" rebuild ${CMAKE_JS_FLAGS}
