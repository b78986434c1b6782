#!/usr/bin/env bash
# The Debian packages edgeincep needs beyond Python, in one place; `make install` (so `make export` and
# `make test`) and `.ci/run` call this. Silent and instant when everything is present.
#
#   bash ci/system-packages.sh            # what the default job needs (make export)
#   bash ci/system-packages.sh --tests    # plus what the test suite runs for real (make test)
#
# As root it runs apt-get, else `sudo -n apt-get` when sudo needs no password; otherwise it stops before
# any work with one line naming the command to run. EDGEINCEP_NO_SYSTEM_PACKAGES=1 skips it (a machine
# without apt, whose owner provides these by other means).
set -euo pipefail

# dataset-fashion-mnist: the reference models' validation images (make data, the default job).
# g++-aarch64-linux-gnu, g++: the ExecuTorch Raspberry Pi bundle's runner library, compiled for the board and
# for this machine (so the bundle's --check runs here too) (make export).
PACKAGES="dataset-fashion-mnist g++-aarch64-linux-gnu g++"
# openssh-server + openssh-client: deploy tests run a real sshd on 127.0.0.1 (ssh-keygen for throwaway keys).
# qemu-user-static: the Raspberry Pi bundle runs as arm64 code (tests/bundle/test_arm64.py); the arm64
# architecture lets ci/arm64-sysroot.sh download Debian's arm64 python3 for it.
TEST_PACKAGES="openssh-server openssh-client qemu-user-static"

tests=0
[ "${1:-}" = "--tests" ] && tests=1
[ -n "${EDGEINCEP_NO_SYSTEM_PACKAGES:-}" ] && exit 0
[ "$tests" = 1 ] && PACKAGES="$PACKAGES $TEST_PACKAGES"

if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
  echo "error: edgeincep needs the Debian packages $PACKAGES and this machine has no apt-get;" \
       "install their equivalents, then set EDGEINCEP_NO_SYSTEM_PACKAGES=1" >&2
  exit 1
fi

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
need_arch=0
if [ "$tests" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  need_arch=1
fi
[ -z "$missing" ] && [ "$need_arch" = 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  what=${missing# }
  cmd="sudo apt-get update && sudo apt-get install -y$missing"
  if [ "$need_arch" = 1 ]; then
    what="${what:+$what, }the arm64 package architecture"
    cmd="sudo dpkg --add-architecture arm64 && $cmd"
  fi
  echo "error: edgeincep needs $what (Debian); run: $cmd" >&2
  exit 1
fi

echo "system-packages: installing${missing:- nothing}$([ "$need_arch" = 1 ] && echo ' + the arm64 architecture')" >&2
[ "$need_arch" = 1 ] && "${as_root[@]}" dpkg --add-architecture arm64
"${as_root[@]}" apt-get update -q >/dev/null
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
