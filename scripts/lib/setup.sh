#!/usr/bin/env bash
# Shared setup for scripts/test, scripts/demo and .ci/run. Source it; do not execute it.
#
# Functions:
#   setup_debian_packages  install missing Debian 12 packages; require cargo
#   setup_onnxruntime      extract libonnxruntime into $ROOT/.ort and export ORT_DYLIB_PATH
#   setup_models           export HUB_MODEL_MIRROR when the shared model folder exists
#   setup_ui               Node.js and npm (the machine's, else Debian's), `npm ci` when the lock
#                          file changed, `npm run build` into hub/ui/dist (the hub embeds it)
#   setup_browser          Debian's chromium for the browser tests; exports HUB_CHROMIUM
#   ensure_postgres        export HUB_TEST_POSTGRES_URL (existing server or throwaway cluster)
#   ensure_mosquitto       export HUB_TEST_MQTT_URL and HUB_TEST_MQTT_{ADMIN,HUB}_{USER,PASSWORD}
#                          (always a throwaway Mosquitto with dynamic security)
#   setup_schemathesis     install schemathesis into $ROOT/.venv-st (git-ignored) when missing
#   run_schemathesis       every schemathesis check against a throwaway hub (bounded examples)
#
# Knobs (environment):
#   HUB_PG_PORT_CHECK    port probed for an existing PostgreSQL (default 5432)
#   HUB_TEST_OWN_SERVERS=1  always start a throwaway PostgreSQL (Mosquitto always is)
#   HUB_TEST_POSTGRES_URL / HUB_TEST_MQTT_URL already set: used as given, nothing is probed
#                           (a preset broker needs the four HUB_TEST_MQTT_* accounts too).
set -euo pipefail

# Repo root: two levels above this file (an inherited ROOT is ignored on purpose).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT

HUB_ORT_VERSION=1.31.1
# Filled in by ensure_* so callers can report what they used: preset | existing | started.
HUB_PG_SOURCE=${HUB_PG_SOURCE:-}
HUB_MQTT_SOURCE=${HUB_MQTT_SOURCE:-}

hub_log() { printf '[setup] %s\n' "$*" >&2; }
hub_die() {
  printf '[setup] error: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# Cleanups: one EXIT trap runs every registered command, newest first, so several
# throwaway servers (and temp dirs) can each add their own without clobbering traps.
# ---------------------------------------------------------------------------
HUB_CLEANUPS=()
HUB_CLEANUP_TRAP_SET=${HUB_CLEANUP_TRAP_SET:-}

hub_run_cleanups() {
  local i
  for ((i = ${#HUB_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${HUB_CLEANUPS[i]}" || true
  done
  HUB_CLEANUPS=()
}

# hub_on_exit CMD [ARGS...]: run CMD ARGS at exit; arguments are quoted safely.
hub_on_exit() {
  local cmd
  printf -v cmd '%q ' "$@"
  HUB_CLEANUPS+=("$cmd")
  if [[ -z $HUB_CLEANUP_TRAP_SET ]]; then
    trap hub_run_cleanups EXIT
    # Turn INT/TERM into a normal exit so the EXIT trap still stops the servers.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    HUB_CLEANUP_TRAP_SET=1
  fi
}

# Run a command as root: directly when root, otherwise through sudo
# (non-interactive when there is no terminal, so CI fails instead of hanging).
hub_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
  else
    hub_die "need root for: $* (install sudo or run as root)"
  fi
}

# Run a command as a service user when we are root (postgres refuses to run as root;
# mosquitto drops to its own user); as ourselves otherwise.
hub_as_user() {
  local user=$1
  shift
  if [[ $(id -u) -eq 0 ]]; then
    # cd /: the service user may not be allowed into the caller's working directory.
    (cd / && runuser -u "$user" -- "$@")
  else
    "$@"
  fi
}

# Print a free TCP port on 127.0.0.1 (the kernel picks one; tiny race is acceptable).
hub_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# True when HOST:PORT accepts a TCP connection within 2 s.
hub_tcp_open() {
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, not here
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Debian packages + Rust toolchain check
# ---------------------------------------------------------------------------
# The build and runtime lists are files that docker/Dockerfile installs from too, so the
# image and this machine cannot drift (tests/tests/e2e/docker.rs checks the Dockerfile).
# hub_package_list FILE: the packages of FILE, one a line, `#` comments and blanks dropped.
hub_package_list() {
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' "$1"
}
mapfile -t HUB_DEBIAN_PACKAGES < <(
  hub_package_list "$ROOT/docker/packages-build.txt"
  hub_package_list "$ROOT/docker/packages-run.txt"
)
HUB_DEBIAN_PACKAGES+=(
  # Development only (not in the image): live x264 test cameras (-ugly), gst-launch/inspect.
  gstreamer1.0-plugins-ugly gstreamer1.0-tools
  # Servers for the integration tests. Any service the packages start is not relied on:
  # ensure_postgres/ensure_mosquitto verify access and start their own when needed.
  mosquitto mosquitto-clients postgresql
)

setup_debian_packages() {
  local pkg status missing=()
  for pkg in "${HUB_DEBIAN_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == *" ok installed" ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    hub_log "installing Debian packages: ${missing[*]}"
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi

  # rustup installs into ~/.cargo/bin, which non-login shells may lack on PATH.
  if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'EOF'
[setup] error: cargo not found. Install Rust with rustup (see https://rustup.rs), e.g.:
          download https://sh.rustup.rs, read it, then run it with: sh rustup-init.sh -y
          rustup component add rustfmt clippy
        then open a new shell (or: source "$HOME/.cargo/env") and rerun this script.
EOF
    exit 1
  fi
}

# ---------------------------------------------------------------------------
# ONNX Runtime shared library (Debian 12 has no package; taken from the PyPI wheel)
# ---------------------------------------------------------------------------
setup_onnxruntime() {
  local dir="$ROOT/.ort" lib="libonnxruntime.so.$HUB_ORT_VERSION"
  if [[ ! -s $dir/$lib ]]; then
    local -a pip
    if python3 -m pip --version >/dev/null 2>&1; then
      pip=(python3 -m pip)
    elif command -v pip >/dev/null 2>&1; then
      pip=(pip)
    else
      hub_die "neither 'python3 -m pip' nor 'pip' works; install python3-pip"
    fi
    local tmp wheel
    tmp=$(mktemp -d)
    hub_on_exit rm -rf "$tmp" # covers failures below; removed right away on success
    hub_log "downloading onnxruntime $HUB_ORT_VERSION wheel to extract $lib"
    # Wheel tags are fixed so the result doesn't depend on the local Python version.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
      --python-version 3.12 --platform manylinux_2_28_x86_64 \
      "onnxruntime==$HUB_ORT_VERSION" -d "$tmp"
    wheel=$(find "$tmp" -maxdepth 1 -name "onnxruntime-$HUB_ORT_VERSION-*.whl" -print -quit)
    [[ -n $wheel ]] || hub_die "pip did not produce an onnxruntime $HUB_ORT_VERSION wheel"
    # Extract into the temp dir first, then move: an interrupted run never leaves a partial .so.
    unzip -q -o -j "$wheel" "onnxruntime/capi/$lib" -d "$tmp/out"
    [[ -s $tmp/out/$lib ]] || hub_die "$lib not found in $wheel"
    mkdir -p "$dir"
    mv -f "$tmp/out/$lib" "$dir/$lib"
    rm -rf "$tmp"
  fi
  [[ -s $dir/$lib ]] || hub_die "$dir/$lib missing after extraction"
  export ORT_DYLIB_PATH="$dir/$lib"
}

# ---------------------------------------------------------------------------
# Models: the shared mirror next to the checkout, when present
# ---------------------------------------------------------------------------
setup_models() {
  local mirror="$ROOT/../shared/data/models"
  if [[ -d $mirror ]]; then
    HUB_MODEL_MIRROR=$(realpath "$mirror")
    export HUB_MODEL_MIRROR
  else
    hub_log "note: shared models not found at $mirror; tests that need them fail and say how to get them; the sensor path needs none"
  fi
}

# ---------------------------------------------------------------------------
# The web UI (hub/ui): built with the npm registry's packages pinned by its lock file
# ---------------------------------------------------------------------------
setup_ui() {
  if ! command -v npm >/dev/null 2>&1; then
    hub_log "installing Debian's nodejs and npm (the web UI's build)"
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  ((major >= 18)) || hub_die "Node.js $(node --version 2>/dev/null || echo '?') is too old for the UI build; install Node.js 18 or newer"
  local ui="$ROOT/hub/ui" stamp="$ROOT/hub/ui/node_modules/.package-lock.json"
  if [[ ! -f $stamp || $ui/package-lock.json -nt $stamp ]]; then
    hub_log "installing the web UI's npm packages (npm ci)"
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  hub_log "building the web UI (hub/ui/dist)"
  (cd "$ui" && npm run --silent build >/dev/null)
  [[ -s $ui/dist/index.html ]] || hub_die "the UI build made no hub/ui/dist/index.html"
}

# Debian's chromium for the browser tests (never a test tool's own browser download).
setup_browser() {
  # A CJK font, so that the Chinese UI's screenshots show characters, not boxes.
  if [[ ! -x /usr/bin/chromium ]] || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
    hub_log "installing Debian's chromium and a CJK font (browser tests)"
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    hub_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      chromium fonts-wqy-microhei
  fi
  export HUB_CHROMIUM=/usr/bin/chromium
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
# True when psql can run a query as USER on DB at 127.0.0.1:PORT without a password.
hub_pg_query_ok() {
  PGCONNECT_TIMEOUT=5 psql -X -w -q -At -h 127.0.0.1 -p "$1" -U "$2" -d "$3" \
    -c 'select 1' >/dev/null 2>&1
}

hub_pg_stop() {
  local dir=$1 bindir=$2 user=$3
  hub_as_user "$user" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

ensure_postgres() {
  if [[ -n ${HUB_TEST_POSTGRES_URL:-} ]]; then
    HUB_PG_SOURCE=preset
    export HUB_TEST_POSTGRES_URL
    return 0
  fi

  local port=${HUB_PG_PORT_CHECK:-5432} cand user db
  if [[ ${HUB_TEST_OWN_SERVERS:-} != 1 ]] &&
    pg_isready -q -h 127.0.0.1 -p "$port" -t 3 >/dev/null 2>&1; then
    # Trust auth is expected; try the usual roles before giving up on this server.
    for cand in postgres/postgres root/test root/postgres; do
      user=${cand%/*} db=${cand#*/}
      if hub_pg_query_ok "$port" "$user" "$db"; then
        export HUB_TEST_POSTGRES_URL="postgres://$user@127.0.0.1:$port/$db"
        HUB_PG_SOURCE=existing
        hub_log "PostgreSQL: using existing server at 127.0.0.1:$port as $user/$db"
        return 0
      fi
    done
    hub_log "PostgreSQL on 127.0.0.1:$port refuses password-less login; starting a throwaway cluster"
  fi

  # Throwaway cluster: newest installed major version, trust auth, loopback only.
  local bindir
  bindir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [[ -z $bindir ]]; then
    local initdb_path
    initdb_path=$(command -v initdb || true)
    [[ -n $initdb_path ]] || hub_die "no PostgreSQL server binaries (initdb) found; install postgresql"
    bindir=$(dirname "$(realpath "$initdb_path")")
  fi
  local runas dir pgport
  runas=$(id -un)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hub-pg.XXXXXX")
  if [[ $(id -u) -eq 0 ]]; then
    runas=postgres
    chown postgres: "$dir"
  fi
  hub_on_exit hub_pg_stop "$dir" "$bindir" "$runas"

  hub_as_user "$runas" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
    --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
    {
      cat "$dir/initdb.log" >&2
      hub_die "initdb failed"
    }
  pgport=$(hub_free_port)
  # -k: socket in our dir (no /var/run/postgresql needed); -F: no fsync, it's throwaway.
  hub_as_user "$runas" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-h 127.0.0.1 -p $pgport -k $dir -F" start >/dev/null ||
    {
      cat "$dir/postgres.log" >&2 || true
      hub_die "throwaway PostgreSQL failed to start"
    }
  local i
  for ((i = 0; i < 60; i++)); do
    pg_isready -q -h 127.0.0.1 -p "$pgport" -t 1 && break
    sleep 0.5
  done
  hub_pg_query_ok "$pgport" postgres postgres || {
    cat "$dir/postgres.log" >&2 || true
    hub_die "throwaway PostgreSQL on port $pgport does not answer"
  }
  export HUB_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pgport/postgres"
  HUB_PG_SOURCE=started
  hub_log "PostgreSQL: started throwaway cluster on 127.0.0.1:$pgport ($dir)"
}

# ---------------------------------------------------------------------------
# Mosquitto
# ---------------------------------------------------------------------------
# The tests need a broker that authenticates as a deployment does (docs/guide.md): Mosquitto
# with the dynamic-security plugin, no anonymous login, an admin account the hub provisions
# devices with, and the hub's own account. An existing broker (e.g. the machine's anonymous
# Mosquitto on 1883) cannot serve: its accounts are unknown, so a throwaway one is always
# started, unless HUB_TEST_MQTT_URL is preset together with the four accounts below.

hub_mqtt_stop() {
  local pid=$1 dir=$2 i
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

# hub_dynsec PORT ARGS...: one `mosquitto_ctrl dynsec` command as the throwaway broker's
# admin; its warning about unencrypted (loopback) traffic is dropped.
hub_dynsec() {
  local port=$1 out
  shift
  out=$(mosquitto_ctrl -h 127.0.0.1 -p "$port" -u "$HUB_TEST_MQTT_ADMIN_USER" \
    -P "$HUB_TEST_MQTT_ADMIN_PASSWORD" dynsec "$@" 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
}

ensure_mosquitto() {
  if [[ -n ${HUB_TEST_MQTT_URL:-} ]]; then
    local v
    for v in HUB_TEST_MQTT_ADMIN_USER HUB_TEST_MQTT_ADMIN_PASSWORD HUB_TEST_MQTT_HUB_USER \
      HUB_TEST_MQTT_HUB_PASSWORD; do
      [[ -n ${!v:-} ]] || hub_die "HUB_TEST_MQTT_URL is preset but $v is not: a preset broker needs its dynamic-security admin and hub accounts (see ensure_mosquitto)"
      export "${v?}"
    done
    HUB_MQTT_SOURCE=preset
    export HUB_TEST_MQTT_URL
    return 0
  fi

  local bin plugin
  # /usr/sbin is often missing from a non-root PATH.
  bin=$(command -v mosquitto || true)
  if [[ -z $bin && -x /usr/sbin/mosquitto ]]; then bin=/usr/sbin/mosquitto; fi
  [[ -n $bin ]] || hub_die "mosquitto not found; install the mosquitto package"
  command -v mosquitto_ctrl >/dev/null 2>&1 ||
    hub_die "mosquitto_ctrl not found; install the mosquitto-clients package"
  plugin=$(find /usr/lib -name mosquitto_dynamic_security.so -print -quit 2>/dev/null || true)
  [[ -n $plugin ]] ||
    hub_die "mosquitto_dynamic_security.so not found; install the mosquitto package (2.0 or later)"

  local dir mqport pid
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hub-mqtt.XXXXXX")
  mqport=$(hub_free_port)
  HUB_TEST_MQTT_ADMIN_USER=admin
  HUB_TEST_MQTT_ADMIN_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  HUB_TEST_MQTT_HUB_USER=hub
  HUB_TEST_MQTT_HUB_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  export HUB_TEST_MQTT_ADMIN_USER HUB_TEST_MQTT_ADMIN_PASSWORD HUB_TEST_MQTT_HUB_USER \
    HUB_TEST_MQTT_HUB_PASSWORD
  mosquitto_ctrl dynsec init "$dir/dynsec.json" "$HUB_TEST_MQTT_ADMIN_USER" \
    "$HUB_TEST_MQTT_ADMIN_PASSWORD" >/dev/null || hub_die "mosquitto_ctrl dynsec init failed"
  : >"$dir/mosquitto.log"
  # max_queued_messages / max_inflight_messages 100: the defaults silently drop QoS1 messages
  # under load (shared/platform-notes.md). Not 0 ("no limit"): Mosquitto 2.0.11 then breaks
  # the connection of a client whose publish the ACL denies (docker/mosquitto.conf).
  cat >"$dir/mosquitto.conf" <<EOF
listener $mqport 127.0.0.1
allow_anonymous false
plugin $plugin
plugin_opt_config_file $dir/dynsec.json
max_queued_messages 1000000
max_inflight_messages 100
persistence false
log_dest file $dir/mosquitto.log
EOF
  # Started as root, mosquitto drops to user 'mosquitto': it must reach the log and rewrite
  # dynsec.json (the plugin saves every change there).
  if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto: "$dir"
  fi
  # Foreground process in the background (not -d) so we own its pid; output to the log
  # so it never holds our stdout open after we exit.
  "$bin" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.stdout" 2>&1 &
  pid=$!
  hub_on_exit hub_mqtt_stop "$pid" "$dir"

  local i
  for ((i = 0; i < 100; i++)); do
    hub_tcp_open 127.0.0.1 "$mqport" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # The hub's own account: the shared subscription on the devices' topics and events on hub/#.
  # Mosquitto 2.0 checks a shared subscription's ACL with its $share/GROUP/ prefix.
  # shellcheck disable=SC2016 # '$share' is a topic, not a variable
  hub_dynsec "$mqport" createRole hub-subscriber &&
    hub_dynsec "$mqport" addRoleACL hub-subscriber subscribePattern 'sites/+/devices/+/#' allow &&
    hub_dynsec "$mqport" addRoleACL hub-subscriber subscribePattern '$share/+/sites/+/devices/+/#' allow &&
    hub_dynsec "$mqport" addRoleACL hub-subscriber publishClientSend 'hub/#' allow &&
    hub_dynsec "$mqport" createClient "$HUB_TEST_MQTT_HUB_USER" -p "$HUB_TEST_MQTT_HUB_PASSWORD" &&
    hub_dynsec "$mqport" addClientRole "$HUB_TEST_MQTT_HUB_USER" hub-subscriber || {
    cat "$dir/mosquitto.log" "$dir/mosquitto.stdout" >&2 2>/dev/null || true
    hub_die "throwaway mosquitto on port $mqport did not come up with dynamic security"
  }
  export HUB_TEST_MQTT_URL="mqtt://127.0.0.1:$mqport"
  HUB_MQTT_SOURCE=started
  hub_log "MQTT: started throwaway mosquitto with dynamic security on 127.0.0.1:$mqport (pid $pid)"
}

# ---------------------------------------------------------------------------
# OpenAPI conformance: schemathesis (PyPI) in a git-ignored virtualenv, run against a
# throwaway hub (embedded broker, SQLite, free ports on 127.0.0.1) started for it.
# ---------------------------------------------------------------------------
HUB_SCHEMATHESIS_VERSION=4.32.5

# setup_schemathesis: $ROOT/.venv-st/bin/st, installed when missing or another version.
setup_schemathesis() {
  local venv=$ROOT/.venv-st
  if [[ -x $venv/bin/st ]] && "$venv/bin/st" --version 2>/dev/null | grep -q " $HUB_SCHEMATHESIS_VERSION\$"; then
    return
  fi
  hub_log "installing schemathesis $HUB_SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" || hub_die "python3 -m venv failed (apt-get install python3-venv)"
  "$venv/bin/pip" install -q "schemathesis==$HUB_SCHEMATHESIS_VERSION" ||
    hub_die "pip install schemathesis==$HUB_SCHEMATHESIS_VERSION failed (needs PyPI)"
}

hub_st_hub_stop() {
  local pid=$1 dir=$2
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

# run_schemathesis: builds the hub, starts it on free loopback ports with a one-site
# configuration, waits for /healthz and runs every schemathesis check on every operation with
# a bounded example count (HUB_ST_EXAMPLES per operation, default 40; HUB_ST_MAX_TIME seconds,
# default 170). Returns schemathesis' exit status. Camera URLs stay on 127.0.0.1
# (scripts/lib/st_hooks.py). Requests carry an admin token made with `hub token create`; the
# endless event stream (/api/v1/findings/stream) and the live WebSocket are left out
# (tests/e2e/access.rs and live.rs cover them).
run_schemathesis() {
  local dir http mq pid i rc=0
  cargo build -p hub --bin hub --locked || return 1
  dir=$(mktemp -d /tmp/hub-st.XXXXXX)
  http=$(hub_free_port)
  mq=$(hub_free_port)
  cat >"$dir/hub.toml" <<EOT
data_dir = "$dir/data"

[http]
listen = "127.0.0.1:$http"

[database]
url = "sqlite://hub.db"

[mqtt]
mode = "embedded"
listen = "127.0.0.1:$mq"

[[sites]]
id = "st-site"
name = "schemathesis site"
region = "610100"
industry = "food"
entity_name = "Test Co."
uscc = "91350100M000100Y43"

[device_kinds.fridge]
description = "fridge"
inactivity_timeout = "2m"
offline_severity = "major"
offline_item_code = "61000000100001"
EOT
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/hub" token
  # An admin token for schemathesis, made on the hub's database before it starts.
  token=$("$bin" token create --config "$dir/hub.toml" --role admin --name schemathesis --expires 1d |
    grep -o 'hubt_[A-Za-z0-9_-]*') || { hub_log "error: hub token create failed"; return 1; }
  HUB_ADMIN_PASSWORD=schemathesis-admin HUB_LOG=${HUB_LOG:-warn} "$bin" run --config "$dir/hub.toml" >"$dir/hub.log" 2>&1 &
  pid=$!
  hub_on_exit hub_st_hub_stop "$pid" "$dir"
  for ((i = 0; i < 300; i++)); do
    curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1; then
    cat "$dir/hub.log" >&2
    hub_log "error: the hub for schemathesis did not become healthy on 127.0.0.1:$http"
    return 1
  fi
  # The document itself needs a credential: fetched once, then read from the file.
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$http/api/v1/openapi.json" \
    -o "$dir/openapi.json" || { hub_log "error: fetching the OpenAPI document failed"; return 1; }
  local start=$SECONDS
  HUB_ST_TOKEN=$token SCHEMATHESIS_HOOKS="$ROOT/scripts/lib/st_hooks.py" "$ROOT/.venv-st/bin/st" --config-file "$ROOT/scripts/lib/schemathesis.toml" run \
    "$dir/openapi.json" --url "http://127.0.0.1:$http" \
    --exclude-path /api/v1/findings/stream --exclude-path-regex '^/api/v1/cameras/[^/]+/live$' \
    -n "${HUB_ST_EXAMPLES:-40}" --max-time "${HUB_ST_MAX_TIME:-170}" \
    --seed "${HUB_ST_SEED:-7}" --no-color --generation-database none \
    --report junit --report-dir "$dir/report" || rc=$?
  hub_log "schemathesis: exit $rc after $((SECONDS - start)) s (hub log: $dir/hub.log while running)"
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$dir/hub.log" >&2
    hub_log "error: the hub died during the schemathesis run"
    rc=1
  fi
  return "$rc"
}
