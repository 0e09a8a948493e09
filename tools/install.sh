#!/usr/bin/env bash
# Install printpipe as a system service on Debian / Raspberry Pi OS (bookworm, trixie).
#
#   sudo tools/install.sh              install or upgrade (run it again after `git pull`)
#   sudo tools/install.sh --uninstall  remove what it added; keep the config and the state
#   tools/install.sh --root DIR        stage every file under DIR and run no system command
#
# What it puts where (README, "Running as a service"):
#   /opt/printpipe/venv                       a venv with printpipe installed from this tree
#   /usr/local/bin/printpipe                  a link to the venv's command
#   /etc/sysusers.d/printpipe.conf            the `printpipe` system user, member of dialout
#   /etc/printpipe/printer.yaml               the config: from configs/marlin-usb.yaml the first
#                                             time, never overwritten afterwards
#   /etc/printpipe/printers.d/                more printers, one NAME.yaml each (what goes under
#                                             `printers: NAME:`); made empty, root:printpipe
#                                             2750; `sudo printpipe printers add NAME --port
#                                             /dev/serial/by-id/...` writes one (README,
#                                             "Several printers")
#   /etc/systemd/system/printpipe.service     the hardened unit (configs/printpipe.service);
#                                             its StateDirectory= makes /var/lib/printpipe
#   /etc/avahi/services/printpipe.service     announces _octoprint._tcp and _http._tcp on the
#                                             config's http.port, so slicers find the printer;
#                                             printpipe-NAME.service the same for each printer
#                                             with its own `http: port:` (in `printers:` or
#                                             printers.d/NAME.yaml), named "printpipe NAME";
#                                             run it again after adding a printer
# With --root no venv is built (pip would install into DIR/opt/printpipe/venv with paths that
# point into DIR): the venv step is printed instead, and everything else is staged as it is.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ARGS="$*"
ROOT=""
UNINSTALL=0
APT=1

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --root DIR, --uninstall, --no-apt (do not apt-get install what is missing)"
    echo "More printers: sudo printpipe printers add NAME --port /dev/serial/by-id/... writes"
    echo "/etc/printpipe/printers.d/NAME.yaml; sudo printpipe printers list shows them all;"
    echo "run install.sh again to announce a printer with its own --http-port (avahi)."
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a folder" >&2; exit 2; }
                ROOT=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
        --root=*) ROOT=$(mkdir -p "${1#--root=}" && cd "${1#--root=}" && pwd); shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --no-apt) APT=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

VENV=/opt/printpipe/venv
BIN=/usr/local/bin/printpipe
SYSUSERS=/etc/sysusers.d/printpipe.conf
CONFIG=/etc/printpipe/printer.yaml
DROPINS=/etc/printpipe/printers.d
UNIT=/etc/systemd/system/printpipe.service
AVAHI=/etc/avahi/services/printpipe.service
STATE=/var/lib/printpipe

say() { echo "install.sh: $*"; }
# run CMD...: a system step; with --root it is only printed.
run() {
    if [ -n "$ROOT" ]; then say "(--root: not run) $*"; else "$@"; fi
}

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (sudo $0${ARGS:+ $ARGS}), or stage the files with --root DIR" >&2
    exit 1
fi

# ---- uninstall --------------------------------------------------------------------------------
if [ "$UNINSTALL" -eq 1 ]; then
    if [ -z "$ROOT" ] && systemctl list-unit-files printpipe.service >/dev/null 2>&1; then
        systemctl disable --now printpipe.service || true
    fi
    rm -f "$ROOT$UNIT" "$ROOT$AVAHI" "$ROOT$(dirname "$AVAHI")"/printpipe-*.service \
        "$ROOT$SYSUSERS" "$ROOT$BIN"
    rm -rf "$ROOT/opt/printpipe"
    run systemctl daemon-reload
    say "removed the service, the avahi announcement, the venv and the command"
    say "kept the config ($CONFIG, $DROPINS), the state and uploads ($STATE) and the printpipe user"
    exit 0
fi

# ---- what the system needs --------------------------------------------------------------------
if [ -z "$ROOT" ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "install.sh: printpipe needs Python 3.11 or newer (bookworm has it)" >&2; exit 1; }
    missing=()
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
        || missing+=(python3-venv)
    [ -d /etc/avahi/services ] || missing+=(avahi-daemon)
    command -v ffmpeg >/dev/null || missing+=(ffmpeg)  # timelapse movies
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$APT" -eq 1 ]; then
            apt-get update && apt-get install -y "${missing[@]}"
        else
            say "missing ${missing[*]}: sudo apt-get install ${missing[*]}"
            [[ " ${missing[*]} " == *" python3-venv "* ]] && exit 1
        fi
    fi
fi

# ---- the venv -----------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    say "(--root: not run) python3 -m venv $VENV && $VENV/bin/pip install --upgrade $SRC"
else
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet --upgrade "$SRC"
fi
mkdir -p "$ROOT$(dirname "$BIN")"
ln -sfn "$VENV/bin/printpipe" "$ROOT$BIN"

# ---- the user -----------------------------------------------------------------------------------
mkdir -p "$ROOT$(dirname "$SYSUSERS")"
install -m 0644 "$SRC/configs/printpipe.sysusers" "$ROOT$SYSUSERS"
run systemd-sysusers "$SYSUSERS"

# ---- the config: written once, never overwritten ----------------------------------------------
mkdir -p "$ROOT$(dirname "$CONFIG")"
if [ -e "$ROOT$CONFIG" ]; then
    say "kept the existing $CONFIG"
else
    tmp=$(mktemp "$ROOT$(dirname "$CONFIG")/.printer.yaml.XXXXXX")
    {
        cat "$SRC/configs/marlin-usb.yaml"
        printf '\n# Where the service keeps uploads and its state (keys.json, uuid, the serial log);\n'
        printf '# the unit'"'"'s StateDirectory= creates %s for the printpipe user.\n' "$STATE"
        printf 'storage:\n  folder: %s/files\n  state: %s/state\n' "$STATE" "$STATE"
    } > "$tmp"
    chmod 0640 "$tmp"
    mv "$tmp" "$ROOT$CONFIG"
    say "wrote $CONFIG: set printer.port and the profile, then: sudo systemctl restart printpipe"
fi
run chgrp printpipe "$CONFIG"
# The drop-in folder: the service reads it (group printpipe), root writes it; setgid, so the
# files `printpipe printers add` writes there get the printpipe group too.
mkdir -p "$ROOT$DROPINS"
chmod 2750 "$ROOT$DROPINS"
run chgrp printpipe "$DROPINS"

# ---- the unit -----------------------------------------------------------------------------------
mkdir -p "$ROOT$(dirname "$UNIT")"
install -m 0644 "$SRC/configs/printpipe.service" "$ROOT$UNIT"

# ---- the avahi announcement, on the config's port, and one per printer with its own port -----
# http.port of a config file: a two-space indented `port:` under its top-level `http:` key (a
# drop-in's `http: port:` is its printer's own port).
http_port() {
    awk '/^http:/ { inside = 1; next } /^[^ #]/ { inside = 0 }
         inside && /^  port:/ { print $2; exit }' "$1"
}
# "NAME PORT" for each printer of the config's `printers:` section with its own `http: port:`.
own_ports() {
    awk '/^printers:/ { inside = 1; next } /^[^ #]/ { inside = 0 }
         inside && /^  [a-z0-9-]+:/ { name = $1; sub(/:$/, "", name); http = 0; next }
         inside && /^    http:/ { http = 1; next }
         inside && /^    [^ #]/ { http = 0 }
         inside && http && /^      port:/ { print name, $2 }' "$1"
}
# announce FILE NAME PORT: the template with the port and the name shown in slicers.
announce() {
    sed -e "s/@PORT@/$3/g" -e "s/printpipe on %h/$2 on %h/" \
        "$SRC/configs/printpipe.avahi.xml" > "$1.tmp"
    chmod 0644 "$1.tmp"
    mv "$1.tmp" "$1"
}
PORT=$(http_port "$ROOT$CONFIG")
case "$PORT" in ''|*[!0-9]*) PORT=5000 ;; esac
mkdir -p "$ROOT$(dirname "$AVAHI")"
announce "$ROOT$AVAHI" printpipe "$PORT"
rm -f "$ROOT$(dirname "$AVAHI")"/printpipe-*.service   # printers since removed
{
    own_ports "$ROOT$CONFIG"
    for dropin in "$ROOT$DROPINS"/*.yaml; do
        [ -f "$dropin" ] || continue
        name=$(basename "$dropin" .yaml)
        echo "$name $(http_port "$dropin")"
    done
} | while read -r name port; do
    case "$name" in ''|*[!a-z0-9-]*) continue ;; esac
    case "$port" in ''|0|*[!0-9]*) continue ;; esac   # no own port (or a free one): not announced
    announce "$ROOT$(dirname "$AVAHI")/printpipe-$name.service" "printpipe $name" "$port"
    say "announced printer $name on port $port"
done

# ---- start it -----------------------------------------------------------------------------------
run systemctl daemon-reload
run systemctl enable printpipe.service
run systemctl restart printpipe.service
if [ -z "$ROOT" ]; then
    systemctl try-reload-or-restart avahi-daemon.service || true
    say "printpipe runs as a service on port $PORT (journalctl -u printpipe -f);"
    say "sudo printpipe keys show prints its API key once it has started"
fi
say "done"
