#!/bin/sh
# Creates Mosquitto's dynamic-security file once, for docker/compose.yaml's broker-init service:
# an admin account (the hub provisions devices with it: mqtt.dynsec_username) and the hub's own
# account (mqtt.username), whose role allows the shared subscription on the devices' topics and
# publishing hub events. An existing file is kept, so accounts made since survive restarts.
#
# Environment: MQTT_ADMIN_PASSWORD, MQTT_HUB_PASSWORD (required); DYNSEC_FILE (default
# /mosquitto/data/dynamic-security.json); DYNSEC_PLUGIN (default the eclipse-mosquitto image's
# /usr/lib/mosquitto_dynamic_security.so; Debian: /usr/lib/x86_64-linux-gnu/…).
set -eu
file=${DYNSEC_FILE:-/mosquitto/data/dynamic-security.json}
plugin=${DYNSEC_PLUGIN:-/usr/lib/mosquitto_dynamic_security.so}
: "${MQTT_ADMIN_PASSWORD:?set MQTT_ADMIN_PASSWORD (docker/.env)}"
: "${MQTT_HUB_PASSWORD:?set MQTT_HUB_PASSWORD (docker/.env)}"
if [ -s "$file" ]; then
  echo "init-dynsec: $file exists; kept"
  exit 0
fi
mkdir -p "$(dirname "$file")"
mosquitto_ctrl dynsec init "$file" admin "$MQTT_ADMIN_PASSWORD" >/dev/null

# mosquitto_ctrl speaks MQTT: run the broker on loopback for the remaining commands.
port=18830
conf=$(mktemp)
cat >"$conf" <<EOF
listener $port 127.0.0.1
allow_anonymous false
plugin $plugin
plugin_opt_config_file $file
EOF
# Started as root, mosquitto drops to user mosquitto, which must rewrite $file on every change
# (then and when the broker service runs).
if id mosquitto >/dev/null 2>&1; then chown -R mosquitto:mosquitto "$(dirname "$file")"; fi
mosquitto -c "$conf" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$conf"' EXIT
ctrl() {
  mosquitto_ctrl -h 127.0.0.1 -p "$port" -u admin -P "$MQTT_ADMIN_PASSWORD" dynsec "$@" 2>/dev/null
}
i=0
until ctrl getDefaultACLAccess publishClientSend >/dev/null; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "init-dynsec: the broker did not come up" >&2; exit 1; }
  sleep 0.1
done
# Mosquitto 2.0 checks a shared subscription's ACL with its $share/GROUP/ prefix.
ctrl createRole hub-subscriber
ctrl addRoleACL hub-subscriber subscribePattern 'sites/+/devices/+/#' allow
ctrl addRoleACL hub-subscriber subscribePattern '$share/+/sites/+/devices/+/#' allow
ctrl addRoleACL hub-subscriber publishClientSend 'hub/#' allow
ctrl createClient hub -p "$MQTT_HUB_PASSWORD"
ctrl addClientRole hub hub-subscriber
kill "$pid"
wait "$pid" || true
echo "init-dynsec: created $file with the accounts admin and hub"
