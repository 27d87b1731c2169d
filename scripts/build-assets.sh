#!/usr/bin/env bash
# Installs the browser assets pinned in webapp/assets/package-lock.json from the npm registry and copies the
# files the app serves into webapp/static/vendor/ (neither folder is committed). `npm ci` runs only when
# node_modules is missing or the lock changed since the last install, so reruns take well under a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
assets="$root/webapp/assets"
vendor="$root/webapp/static/vendor"

if ! command -v npm >/dev/null 2>&1; then
    echo "build-assets: npm not found. Node.js and npm are needed to install the BPMN viewer (bpmn-js);" >&2
    echo "build-assets: install Node.js 18 or later (it ships npm), e.g. 'apt-get install nodejs npm', then rerun." >&2
    exit 1
fi

stamp="$assets/node_modules/.lvyue-lock.sha256"
want="$(sha256sum "$assets/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (cd "$assets" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi

# bpmn-js: the NavigatedViewer build (global `BpmnJS`) and its two stylesheets. The viewer needs no bpmn-font
# (the icon font is for the modeler's palette and context pad) and neither stylesheet references it.
dist="$assets/node_modules/bpmn-js/dist"
mkdir -p "$vendor/bpmn-js"
for f in bpmn-navigated-viewer.production.min.js assets/diagram-js.css assets/bpmn-js.css; do
    cp -p "$dist/$f" "$vendor/bpmn-js/$(basename "$f")"
done
cp -p "$assets/node_modules/bpmn-js/LICENSE" "$vendor/bpmn-js/LICENSE"
