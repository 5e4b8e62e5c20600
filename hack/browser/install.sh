#!/usr/bin/env bash
# The browser the console's e2e tests drive (tests/e2e/test_console.py): Debian's chromium and
# chromium-driver, through Selenium. Idempotent: installs only what is missing; no browser is
# downloaded from anywhere but the distribution's packages. Needs root (or sudo) to install.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
SUDO=()
[[ "$(id -u)" == 0 ]] || SUDO=(sudo -n)
echo "browser: installing ${missing[*]}" >&2
# Another apt run on the machine holds the lock for a while: wait for it rather than fail.
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v chromedriver >/dev/null && command -v chromium >/dev/null
