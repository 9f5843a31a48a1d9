#!/usr/bin/env bash
# Installs Mesa 25's Vulkan drivers (lavapipe, a software Vulkan device) from Debian
# bookworm-backports, so ONNX Runtime's WebGPU provider runs for real on a machine without a
# GPU and CI tests the accelerated branch. Debian 12's own Mesa 22 is rejected by the WebGPU
# provider. Needs root and apt; idempotent (an installed Mesa >= 25 is kept).
#
# Pinned to the backports version checked here; backports replaces old versions, so when the
# pinned one is gone the newest 25.x from backports is taken, with a warning.
set -euo pipefail

PINNED=25.0.7-2~bpo12+1
SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources

installed="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
if [ -n "$installed" ] && dpkg --compare-versions "$installed" ge 25 \
    && [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] \
    && dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q "ok installed"; then
    echo "lavapipe: mesa-vulkan-drivers $installed (already installed)"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "lavapipe: needs root and apt-get (Debian 12); not installed" >&2
    exit 1
fi
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > "$SOURCES" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq -t bookworm-backports "mesa-vulkan-drivers=$PINNED" libvulkan1 >/dev/null; then
    echo "lavapipe: $PINNED is no longer in bookworm-backports; taking its newest Mesa" >&2
    apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi
installed="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
if ! dpkg --compare-versions "$installed" ge 25; then
    echo "lavapipe: got mesa-vulkan-drivers $installed; the WebGPU provider needs Mesa >= 25" >&2
    exit 1
fi
echo "lavapipe: mesa-vulkan-drivers $installed installed"
