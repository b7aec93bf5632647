#!/bin/sh
# instanceapi-cleanup.sh - delete Satellite hosts whose OpenStack instance is gone.
#
# Usage: instanceapi-cleanup.sh [--apply] [--max-delete N] SERVICE_URL
#
# Reads every host's id and name, virt::uuid and DMI product name with hammer
# (every page, in host id order), asks the instanceapi service about each
# OpenStack guest with curl, and lists a host as
# absent only on a 404 that carries "Instance-Exists: false", a JSON body and
# "exists": false. Anything else (200, 400, 5xx, a bare 404 from a wrong URL,
# no answer) keeps the host. Dry-run by default. With --apply it deletes, but
# only if at most N hosts (default 10) are absent, never a host linked to a
# compute resource or whose virt::uuid changed since it was read, by id, and
# counts a deletion only once the host is gone. `instanceapi reap` adds two-phase confirmation, an audit
# log and per-host protection; prefer it for unattended runs.
#
# Environment: INSTANCEAPI_TOKEN_FILE (file with the service's bearer token),
# INSTANCEAPI_CLIENT_CERT and INSTANCEAPI_CLIENT_KEY (this host's certificate
# and key, when the service's nginx front requires mutual TLS),
# PRODUCTS (accepted product names, "|"-separated; default
# "OpenStack Compute|OpenStack Nova"), HAMMER (default: hammer).
# Exit: 0 done, 1 a deletion failed, 2 usage, 3 hammer failed,
#       4 service not ready, 5 too many absent hosts (nothing deleted).

set -eu

apply=0
max_delete=10
products=${PRODUCTS:-OpenStack Compute|OpenStack Nova}
while [ $# -gt 0 ]; do
    case $1 in
        --apply) apply=1 ;;
        --max-delete) max_delete=${2:-}; shift ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
if [ $# -ne 1 ]; then
    echo "usage: $0 [--apply] [--max-delete N] SERVICE_URL" >&2
    exit 2
fi
service=${1%/}
case $service in http://?* | https://?*) ;; *) echo "not an http(s) URL: $service" >&2; exit 2 ;; esac
case $max_delete in '' | *[!0-9]*) echo "--max-delete needs a number" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

hammer_csv() {
    "${HAMMER:-hammer}" --output csv --no-headers "$@" </dev/null
}

# Print the HTTP status of GET $service$1; headers and body land in $tmp.
http() {
    set -- -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 30 "$service$1"
    if [ -n "${INSTANCEAPI_CLIENT_CERT:-}" ]; then
        set -- --cert "$INSTANCEAPI_CLIENT_CERT" --key "${INSTANCEAPI_CLIENT_KEY:?needs INSTANCEAPI_CLIENT_KEY too}" "$@"
    fi
    if [ -n "${INSTANCEAPI_TOKEN_FILE:-}" ]; then
        # Through --config on stdin, so the token never shows in the process list.
        printf 'header = "Authorization: Bearer %s"\n' "$(cat "$INSTANCEAPI_TOKEN_FILE")" |
            curl --config - "$@"
    else
        curl "$@" </dev/null
    fi
}

absence_marked() {
    tr -d '\r' <"$tmp/headers" | grep -qi '^instance-exists:[[:space:]]*false[[:space:]]*$' &&
        tr -d '\r' <"$tmp/headers" | grep -qi '^content-type:[[:space:]]*application/json' &&
        grep -q '"exists"[[:space:]]*:[[:space:]]*false' "$tmp/body"
}

# Every row of one fact, in host id order (a stable order for hammer's paging).
# Without --per-page, hammer's CSV output reads every page until a short one;
# "--per-page all" would list nothing at all.
hammer_facts() {
    hammer_csv fact list --search "fact = $1" --order "host_id ASC" >"$2" ||
        { echo "hammer fact list ($1) failed; nothing deleted" >&2; exit 3; }
}

# Katello's registration of host id $1 (consumer uuid, registered at), from
# hammer-cli-katello's "Subscription Information" of `host info`; empty if none.
registration() {
    reg=$(hammer_csv host info --id "$1" \
        --fields "Subscription Information/Uuid,Subscription Information/Registered At") || reg=""
    case $reg in ,* | *, | '') reg="" ;; esac
    printf '%s\n' "$reg"
}

# The host right before its DELETE: same id and name, no compute resource, still
# the same virt::uuid and registration (a new machine registering under the name
# keeps the id and name but brings a new virt::uuid and consumer). $4 is the
# registration seen when the host was found absent. Any doubt keeps the host.
same_host() {
    row=$(hammer_csv host list --search "name = \"$2\" and null? compute_resource" \
        --fields Id,Name) || return 1
    [ "$row" = "$1,$2" ] || return 1
    hammer_csv fact list --search "host = $1 and fact = virt::uuid" >"$tmp/reread" || return 1
    [ "$(awk -F, '{ sub(/\r$/, ""); gsub(/^"|"$/, "", $3); print $3 }' "$tmp/reread")" = "$3" ] ||
        return 1
    [ -n "$4" ] && [ "$(registration "$1")" = "$4" ]
}

# Katello answers a DELETE with success even when the record survived: only a
# listing that no longer finds the host proves the deletion.
gone() {
    row=$(hammer_csv host list --search "name = \"$2\"" --fields Id) || return 1
    [ -z "$row" ]
}

require_ready() {
    code=$(http /readyz) || code=000
    if [ "$code" != 200 ]; then
        echo "service not ready: $service/readyz answered $code; nothing deleted" >&2
        exit 4
    fi
}

require_ready
hammer_csv host list --fields Id,Name >"$tmp/hosts" ||
    { echo "hammer host list failed; nothing deleted" >&2; exit 3; }
hammer_facts dmi::system::product_name "$tmp/products"
hammer_facts virt::uuid "$tmp/uuids"

# Hosts are id,name; fact rows host,fact,value. Keep hosts whose product name is
# accepted, with their id: the DELETE goes by id.
awk -F, -v products="$products" '
    BEGIN { n = split(products, p, "|"); for (i = 1; i <= n; i++) ok[p[i]] = 1 }
    { sub(/\r$/, ""); gsub(/"/, "") }
    FILENAME == ARGV[1] { id[$2] = $1; next }
    FILENAME == ARGV[2] { if ($3 in ok) openstack[$1] = 1; next }
    ($1 in openstack) && ($1 in id) { print id[$1], $1, $3 }
' "$tmp/hosts" "$tmp/products" "$tmp/uuids" >"$tmp/candidates"

: >"$tmp/absent"
while read -r id host uuid; do
    case $uuid in
        '' | *[!0-9a-fA-F-]*) echo "skip    $host: unusable virt::uuid '$uuid'"; continue ;;
    esac
    if [ ${#uuid} -ne 36 ] && [ ${#uuid} -ne 32 ]; then
        echo "skip    $host: unusable virt::uuid '$uuid'"
        continue
    fi
    code=$(http "/check/$uuid") || code=000
    if [ "$code" = 404 ] && absence_marked; then
        echo "$id $host $uuid $(registration "$id")" >>"$tmp/absent"
        echo "absent  $host $uuid"
    else
        echo "keep    $host $uuid (HTTP $code)"
    fi
done <"$tmp/candidates"

count=$(wc -l <"$tmp/absent" | tr -d ' ')
if [ "$count" -gt "$max_delete" ]; then
    echo "$count hosts absent, more than --max-delete $max_delete: nothing deleted" >&2
    exit 5
fi
if [ "$apply" != 1 ]; then
    echo "dry-run: $count host(s) would be deleted; run with --apply to delete them"
    exit 0
fi

require_ready
failed=0
while read -r id host uuid reg; do
    if ! same_host "$id" "$host" "$uuid" "$reg"; then
        echo "kept    $host: changed, re-registered, not registered, linked to a compute resource, or hammer failed"
    elif "${HAMMER:-hammer}" host delete --id "$id" </dev/null >/dev/null && gone "$id" "$host"; then
        echo "deleted $host $uuid"
    else
        echo "FAILED  $host $uuid (still there, or unproven)" >&2
        failed=1
    fi
done <"$tmp/absent"
exit "$failed"
