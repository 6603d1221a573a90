#!/usr/bin/env bash
# Install (or update in place) a LoaXa node on Raspberry Pi OS. Idempotent: run it again
# after a change and it leaves the same result.
#
#   sudo deploy/rpi/install.sh --config node.json       # a real Pi
#   deploy/rpi/install.sh --prefix /tmp/root --config node.json
#        # everything under /tmp/root, no root needed: apt, the user, the venv and systemctl
#        # are printed instead of run (tests do this)
#   deploy/rpi/install.sh --dry-run ...                  # print every step, change nothing
#
# What it does: apt packages (mpv python3-venv ppp), the loaxa user in the gpio/audio/dialout
# groups, a venv in /opt/loaxa/venv with pinned gpiozero and pyserial, the firmware/ and hal/
# trees into the slot /opt/loaxa/current points at (a on a first install) and current -> a,
# the config to /etc/loaxa/node.json (mode 600, owned by loaxa), the systemd unit, enabled.
set -euo pipefail

PREFIX=""
DRY_RUN=0
CONFIG=""
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
USER_NAME=loaxa
PINNED=(gpiozero==2.0.1.post3 colorzero==2.0 pyserial==3.5)

usage() { sed -n '2,15p' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) PREFIX="${2:?}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --config) CONFIG="${2:?}"; shift 2 ;;
        --src) SRC="${2:?}"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
PREFIX="${PREFIX%/}"
OPT="$PREFIX/opt/loaxa"
ETC="$PREFIX/etc/loaxa"
UNIT_DIR="$PREFIX/etc/systemd/system"

# run: change this system; printed only under --dry-run, or --prefix for what needs root.
run() { if [[ $DRY_RUN == 1 ]]; then echo "+ $*"; else "$@"; fi; }
system() { if [[ $DRY_RUN == 1 || -n $PREFIX ]]; then echo "+ (system) $*"; else "$@"; fi; }

for d in firmware hal; do
    [[ -d "$SRC/$d" ]] || { echo "install.sh: $SRC/$d not found (use --src)" >&2; exit 1; }
done

# 1. Packages and the service user
system apt-get install -y --no-install-recommends mpv python3-venv ppp
if [[ -n $PREFIX ]] || id -u "$USER_NAME" >/dev/null 2>&1; then
    system usermod -a -G gpio,audio,dialout "$USER_NAME"
else
    system useradd --system --home-dir /var/lib/loaxa --shell /usr/sbin/nologin \
        --groups gpio,audio,dialout "$USER_NAME"
fi

# 2. The venv with pinned dependencies (system site packages: lgpio comes from apt)
if [[ ! -x "$OPT/venv/bin/python" ]]; then
    system python3 -m venv --system-site-packages "$OPT/venv"
fi
system "$OPT/venv/bin/pip" install --no-input "${PINNED[@]}"

# 3. The code into the active slot (a on a first install); current -> that slot
run mkdir -p "$OPT/a" "$OPT/b"
SLOT=a
if [[ -L "$OPT/current" ]]; then
    SLOT="$(basename "$(readlink "$OPT/current")")"
fi
for d in firmware hal; do
    run rm -rf "$OPT/$SLOT/$d.new"
    run cp -R "$SRC/$d" "$OPT/$SLOT/$d.new"
    run find "$OPT/$SLOT/$d.new" -name __pycache__ -prune -exec rm -rf {} +
    run rm -rf "$OPT/$SLOT/$d"
    run mv "$OPT/$SLOT/$d.new" "$OPT/$SLOT/$d"
done
if [[ ! -L "$OPT/current" ]]; then
    run ln -sfn "$SLOT" "$OPT/current"
fi

# 4. The config (secrets: the node key, the broker password) readable by loaxa only
run install -d -m 755 "$ETC"
if [[ -n $CONFIG ]]; then
    run install -m 600 "$CONFIG" "$ETC/node.json"
    system chown "$USER_NAME:$USER_NAME" "$ETC/node.json"
elif [[ ! -f "$ETC/node.json" ]]; then
    echo "install.sh: no --config given and $ETC/node.json does not exist yet" >&2
fi
system chown -R "$USER_NAME:$USER_NAME" "$OPT"

# 5. The unit
run install -d -m 755 "$UNIT_DIR"
run install -m 644 "$SRC/deploy/rpi/loaxa-node.service" "$UNIT_DIR/loaxa-node.service"
system systemctl daemon-reload
system systemctl enable loaxa-node.service
system systemctl restart loaxa-node.service
echo "install.sh: LoaXa node installed in $OPT (slot $SLOT)"
