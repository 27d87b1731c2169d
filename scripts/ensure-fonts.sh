#!/usr/bin/env bash
# The dossier PDF (and the Chinese pages in the browser tests) need Debian's Noto CJK fonts.
# Installs fonts-noto-cjk when missing (as root, or with sudo).
set -euo pipefail
dpkg -s fonts-noto-cjk >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends fonts-noto-cjk
