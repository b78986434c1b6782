#!/usr/bin/env bash
# An emulated Raspberry Pi userland for tests/bundle/test_arm64.py: Debian's arm64 python3 and the
# Raspberry Pi bundle's pinned wheels, unpacked (never installed) under a cache folder, run with
# `qemu-aarch64-static -L SYSROOT`. Idempotent: a stamp records what the sysroot was built from, and
# a second run with the same inputs does nothing.
#
#   bash ci/arm64-sysroot.sh            # -> .cache/arm64/sysroot (EDGEINCEP_ARM64_CACHE overrides .cache/arm64)
#
# Needs the arm64 package architecture and qemu-user-static, which `bash ci/system-packages.sh --tests`
# provides (make test runs both). The Debian release is whatever this machine's apt sources name, with its python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${EDGEINCEP_ARM64_CACHE:-$ROOT/.cache/arm64}
SYSROOT=$CACHE/sysroot
# The rpi bundle's requirements.txt is written from pins.py too, so the sysroot holds what a Pi installs.
PINS=$ROOT/edgeincep/device/pins.py
# Pillow and numpy wheels link only glibc; libstdc++ is for LiteRT's C++ runtime.
EXTRA_DEBS="libstdc++6:arm64 libgcc-s1:arm64"

log() { echo "arm64-sysroot: $*" >&2; }

bash "$ROOT/ci/system-packages.sh" --tests
command -v qemu-aarch64-static >/dev/null || { log "qemu-aarch64-static missing (apt-get install qemu-user-static)"; exit 1; }
apt-cache show libc6:arm64 >/dev/null 2>&1 \
  || { log "apt knows no arm64 packages: run apt-get update after dpkg --add-architecture arm64"; exit 1; }

# The release's default python3 (3.11 on bookworm, 3.13 on trixie): the interpreter a Pi on that release runs.
PYVER=$(apt-cache depends python3:arm64 | sed -n 's/^ *Depends: python\(3\.[0-9]*\):arm64.*/\1/p' | head -n1)
[ -n "$PYVER" ] || { log "cannot tell which python3.X python3:arm64 depends on"; exit 1; }
GLIBC=$(apt-cache policy libc6:arm64 | sed -n 's/^ *Candidate: \([0-9]*\)\.\([0-9]*\).*/\1_\2/p')
PYTAG=cp${PYVER/./}
# A Pi's pip accepts every manylinux tag up to its glibc, but an explicit --platform matches only the tags it
# names (ai-edge-litert 2.x's aarch64 wheels carry only manylinux_2_27: name too few and pip silently picks
# the 1.x release). So name them all, as the device's pip would.
GLIBC_MINOR=${GLIBC#*_}
PLATFORMS=(--platform manylinux2014_aarch64)
for ((m = 17; m <= GLIBC_MINOR; m++)); do PLATFORMS+=(--platform "manylinux_2_${m}_aarch64"); done
PLATFORM=manylinux_${GLIBC}_aarch64

# Any local pip fetches the wheels (it only downloads and unpacks them): the project's venv, a python3 with
# pip, else a throwaway venv (a fresh CI machine may run this before `make install`).
PIP_PY=""
for py in "$ROOT/.venv/bin/python" python3 python3.11; do
  if "$py" -m pip --version >/dev/null 2>&1; then PIP_PY=$py; break; fi
done
if [ -z "$PIP_PY" ]; then
  python3 -m venv "$CACHE/pip-venv" && PIP_PY=$CACHE/pip-venv/bin/python \
    || { log "no python3 with pip or venv here to download the wheels"; exit 1; }
fi

mkdir -p "$CACHE"
REQS=$CACHE/requirements.rpi.txt
"$PIP_PY" "$PINS" rpi > "$REQS"
STAMP_WANT=$( { cat "$0" "$REQS"; echo "$PYVER $GLIBC"; apt-cache policy "python$PYVER:arm64" | sed -n 2,3p; } | sha256sum | cut -c1-16)
if [ -f "$SYSROOT/.stamp" ] && [ "$(cat "$SYSROOT/.stamp")" = "$STAMP_WANT" ]; then
  exit 0  # up to date: silent, so a second `make test` starts at once
fi

t0=$(date +%s)
rm -rf "$SYSROOT.part"
mkdir -p "$CACHE/debs" "$SYSROOT.part"

# The interpreter and its runtime closure; arch-all and virtual packages (mime tables, docs) are not needed
# to run python, and dpkg/tar/perl come in only through pre-depends used by maintainer scripts we never run.
mapfile -t PKGS < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "python$PYVER:arm64" $EXTRA_DEBS \
  | grep -E '^[a-z0-9][a-z0-9.+-]*:arm64$' | grep -vE '^(dpkg|tar|install-info|perl[a-z0-9.-]*):' | sort -u)
log "${#PKGS[@]} arm64 packages for python$PYVER"
# As root apt would drop to its _apt user, which cannot write into a cache under /root or a checkout.
SANDBOX=(); [ "$(id -u)" = 0 ] && SANDBOX=(-o APT::Sandbox::User=root)
(cd "$CACHE/debs" && apt-get download -q "${SANDBOX[@]}" "${PKGS[@]}" >/dev/null)
for pkg in "${PKGS[@]}"; do
  name=${pkg%:arm64}
  deb=$(ls "$CACHE/debs/${name}"_*_arm64.deb | sort -V | tail -n1)
  dpkg -x "$deb" "$SYSROOT.part"
done

# The wheels a Pi's `pip install -r requirements.txt` gets, unpacked where Debian's python looks.
SITE=$SYSROOT.part/usr/local/lib/python$PYVER/dist-packages
"$PIP_PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile --only-binary=:all: \
  --no-warn-conflicts "${PLATFORMS[@]}" --python-version "$PYVER" --implementation cp --abi "$PYTAG" \
  --target "$SITE" -r "$REQS"

# LiteRT's CPU detection (cpuinfo) reads /proc/cpuinfo and /sys/devices/system/cpu; qemu-user passes the
# host's x86 files through, which makes it crash or silently run without XNNPACK. -L redirects these
# paths to the sysroot's copies. The sysroot is a Raspberry Pi 4 (4x Cortex-A72, QEMU_CPU=cortex-a72);
# sysroot-pi5 is the same tree through symlinks with a Pi 5's files (4x Cortex-A76 with dot product,
# QEMU_CPU=cortex-a76), so XNNPACK's other int8 kernels are exercised too.
cpu_files() {  # DIR PART VARIANT REVISION FEATURES BOARD_REVISION MODEL
  mkdir -p "$1/proc" "$1/sys/devices/system/cpu"
  : > "$1/proc/cpuinfo"
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
      "$i" "$5" "$3" "$2" "$4" >> "$1/proc/cpuinfo"
  done
  printf 'Revision\t: %s\nModel\t\t: %s\n' "$6" "$7" >> "$1/proc/cpuinfo"
  for f in possible present online; do echo 0-3 > "$1/sys/devices/system/cpu/$f"; done
}
cpu_files "$SYSROOT.part" 0xd08 0x0 3 "fp asimd evtstrm crc32 cpuid" c03114 "Raspberry Pi 4 Model B Rev 1.4"
echo "python$PYVER" > "$SYSROOT.part/.python"

rm -rf "$SYSROOT" "$SYSROOT-pi5"
mv "$SYSROOT.part" "$SYSROOT"
mkdir "$SYSROOT-pi5"
for entry in "$SYSROOT"/*; do
  case "${entry##*/}" in proc|sys) ;; *) ln -s "../sysroot/${entry##*/}" "$SYSROOT-pi5/${entry##*/}" ;; esac
done
cp "$SYSROOT/.python" "$SYSROOT-pi5/.python"
cpu_files "$SYSROOT-pi5" 0xd0b 0x4 1 \
  "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
  d04170 "Raspberry Pi 5 Model B Rev 1.0"
for view in "$SYSROOT:cortex-a72" "$SYSROOT-pi5:cortex-a76"; do
  QEMU_CPU=${view##*:} qemu-aarch64-static -L "${view%:*}" "${view%:*}/usr/bin/python$PYVER" -c \
    "import platform, numpy, PIL, ai_edge_litert.interpreter; print('${view##*:}', platform.machine(), numpy.__version__, PIL.__version__)" >&2
done
echo "$STAMP_WANT" > "$SYSROOT/.stamp"
log "built $SYSROOT in $(( $(date +%s) - t0 )) s (python$PYVER, $PLATFORM)"
