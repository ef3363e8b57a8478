#!/usr/bin/env bash
# Write an nginx config for tierq replicas, generated from deploy/nginx.conf.
#
#   deploy/render-nginx.sh [-o DIR] [--stdio] LISTEN REPLICA...
#
# LISTEN   port (binds 127.0.0.1:PORT) or ADDR:PORT (0.0.0.0:8080 for every interface)
# REPLICA  port (127.0.0.1:PORT) or HOST:PORT
# -o DIR   where nginx.conf is written (default .cluster/nginx); DIR is also the prefix to pass
#          to nginx -p. Prints the path of the written file.
# --stdio  logs to stderr/stdout instead of files under the prefix (containers)
#
# Example: deploy/render-nginx.sh -o .cluster/nginx 8080 8081 8082 8083
#          nginx -p .cluster/nginx -c "$PWD/.cluster/nginx/nginx.conf" -e stderr
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$here/nginx.conf"
out_dir=.cluster/nginx
stdio=0

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    -o)
        [ $# -ge 2 ] || usage
        out_dir=$2
        shift 2
        ;;
    --stdio)
        stdio=1
        shift
        ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || usage

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

listen=$1
shift
if valid_port "$listen"; then
    listen="127.0.0.1:$listen"
elif ! valid_port "${listen##*:}"; then
    echo "render-nginx: bad listen address: $listen" >&2
    exit 2
fi

servers=""
for replica in "$@"; do
    if valid_port "$replica"; then
        replica="127.0.0.1:$replica"
    elif [[ $replica != *:* ]] || ! valid_port "${replica##*:}"; then
        echo "render-nginx: bad replica address: $replica" >&2
        exit 2
    fi
    servers+="        server $replica max_fails=2 fail_timeout=5s;"$'\n'
done

mkdir -p "$out_dir"
out="$out_dir/nginx.conf"
tmp="$out.tmp.$$"
# Replace the marked blocks of the template; everything else is copied as it is.
SERVERS="$servers" LISTEN="$listen" STDIO="$stdio" awk '
    /# BEGIN upstreams/ { print; printf "%s", ENVIRON["SERVERS"]; skip = 1; next }
    /# END upstreams/   { skip = 0 }
    /# BEGIN listen/    { print; print "        listen " ENVIRON["LISTEN"] " backlog=4096;"; skip = 1; next }
    /# END listen/      { skip = 0 }
    skip { next }
    ENVIRON["STDIO"] == "1" && /^error_log error.log/ { print "error_log stderr warn;"; next }
    ENVIRON["STDIO"] == "1" && /^    access_log access.log/ { print "    access_log /dev/stdout tierq;"; next }
    { print }
' "$template" >"$tmp"
mv "$tmp" "$out"
echo "$out"
