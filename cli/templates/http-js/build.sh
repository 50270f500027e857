#!/bin/sh
# Builds target/{{name}}.wasm, a wasi:http component, from app.js with componentize-js (a
# JavaScript engine compiled to wasm, with app.js preloaded), for the world in wit/.
# `skiff build` runs this (skiff.toml, [component.build] command).
# Needs: Node.js 18 or later and componentize-js: `npm install` here (package.json), or
# `npm install -g @bytecodealliance/componentize-js@0.23.0`.
set -eu
cd "$(dirname "$0")"

missing() { # missing TOOL HOW: says which toolchain piece is absent and how to get it, then fails
    echo "missing toolchain: $1 ($2)" >&2
    exit 127
}
command -v node >/dev/null 2>&1 || missing "node (Node.js 18 or later)" "apt-get install nodejs"
if [ -x node_modules/.bin/componentize-js ]; then
    COMPONENTIZE=node_modules/.bin/componentize-js
elif command -v componentize-js >/dev/null 2>&1; then
    COMPONENTIZE=componentize-js
else
    missing componentize-js "npm install in $(pwd), or npm install -g @bytecodealliance/componentize-js@0.23.0"
fi

mkdir -p target
"$COMPONENTIZE" --wit wit --world-name app --out target/{{name}}.wasm app.js
echo "built target/{{name}}.wasm" >&2
