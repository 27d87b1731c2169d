#!/usr/bin/env bash
# Installs the browser assets pinned in webapp/assets/package-lock.json from the npm registry and copies the
# files the app serves into webapp/static/vendor/ (neither folder is committed). `npm ci` runs only when
# node_modules is missing or the lock changed since the last install, so reruns take well under a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
assets="$root/webapp/assets"
vendor="$root/webapp/static/vendor"

if ! command -v npm >/dev/null 2>&1; then
    echo "build-assets: npm not found. Node.js and npm are needed to install bpmn-js and dmn-js;" >&2
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

# The studio's editors (templates/studio/edit.html): the bpmn-js Modeler build (global `BpmnJS`, so it is loaded only
# on that page) with the icon font of its palette and context pad, and the dmn-js Modeler (global `DmnJS`) with its
# stylesheets and icon font. The fonts are files, not the *-embedded.css data: URLs, which the CSP's font rule
# (default-src 'self') would block.
cp -p "$dist/bpmn-modeler.production.min.js" "$vendor/bpmn-js/bpmn-modeler.production.min.js"
rm -rf "$vendor/bpmn-js/bpmn-font"
mkdir -p "$vendor/bpmn-js/bpmn-font/css" "$vendor/bpmn-js/bpmn-font/font"
cp -p "$dist/assets/bpmn-font/css/bpmn.css" "$vendor/bpmn-js/bpmn-font/css/bpmn.css"
cp -p "$dist"/assets/bpmn-font/font/bpmn.* "$vendor/bpmn-js/bpmn-font/font/"

dmn="$assets/node_modules/dmn-js/dist"
rm -rf "$vendor/dmn-js"
mkdir -p "$vendor/dmn-js/dmn-font/css" "$vendor/dmn-js/dmn-font/font"
cp -p "$dmn/dmn-modeler.production.min.js" "$vendor/dmn-js/dmn-modeler.production.min.js"
for f in diagram-js.css dmn-js-shared.css dmn-js-drd.css dmn-js-decision-table.css dmn-js-decision-table-controls.css \
         dmn-js-literal-expression.css; do
    cp -p "$dmn/assets/$f" "$vendor/dmn-js/$f"
done
cp -p "$dmn/assets/dmn-font/css/dmn.css" "$vendor/dmn-js/dmn-font/css/dmn.css"
cp -p "$dmn"/assets/dmn-font/font/dmn.* "$vendor/dmn-js/dmn-font/font/"
cp -p "$assets/node_modules/dmn-js/LICENSE" "$vendor/dmn-js/LICENSE"
