#!/usr/bin/env bash
# Start a real etcd for tests and for `cube up --store etcd`: Debian's etcd-server.
#
#   scripts/etcd-up.sh                 one member, clients on 127.0.0.1:2379
#   scripts/etcd-up.sh --members 3     three members: 2379, 2381, 2383 (peers one above)
#   scripts/etcd-up.sh --port 12379 --dir /tmp/my-etcd
#   scripts/etcd-up.sh --down          stop the members this script started there
#
# Member i listens for clients on PORT+2i and for its peers on PORT+2i+1, loopback
# only, with its data in DIR/member-i (kept by --down, so a restart resumes). A member
# that already answers on its port is left alone, so running it again is safe. Prints
# the client URLs, comma-separated (what --store etcd://... takes). History older than
# ten minutes is compacted, so a long-running cluster does not fill etcd's quota.
set -euo pipefail

LOGDIR=${LOGDIR:-/tmp/cube-ci}
members=1
port=2379
dir=${CUBE_ETCD_DIR:-/tmp/cube-etcd}
down=0
while [ $# -gt 0 ]; do
  case "$1" in
    --members) members=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --down) down=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "etcd-up.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$members" in 1|3) ;; *) echo "etcd-up.sh: --members is 1 or 3, not $members" >&2; exit 2 ;; esac
mkdir -p "$LOGDIR" "$dir"
dir=$(cd "$dir" && pwd)

client_port() { echo $((port + 2 * $1)); }
peer_port() { echo $((port + 2 * $1 + 1)); }

if [ "$down" = 1 ]; then
  for pidfile in "$dir"/member-*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # only a process that is still this script's etcd (a pid can be reused)
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -- "--data-dir ${pidfile%.pid}" >/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped $(basename "${pidfile%.pid}") (pid $pid)"
    fi
    rm -f "$pidfile"
  done
  exit 0
fi

if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (log: $LOGDIR/apt-etcd.log)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >"$LOGDIR/apt-etcd.log" 2>&1
  # Debian's package may start a service of its own on 2379: not ours to keep running
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
  fi
fi

healthy() {  # does the member with client port $1 answer /health with "true"?
  python3 - "$1" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as r:
    sys.exit(0 if json.load(r).get("health") == "true" else 1)
EOF
}

cluster=""
for i in $(seq 0 $((members - 1))); do
  cluster+="${cluster:+,}member-$i=http://127.0.0.1:$(peer_port "$i")"
done

urls=""
for i in $(seq 0 $((members - 1))); do
  cp=$(client_port "$i")
  urls+="${urls:+,}http://127.0.0.1:$cp"
  if healthy "$cp"; then
    continue  # already running (ours from an earlier call, or someone's): left alone
  fi
  data="$dir/member-$i"
  state=new
  [ -d "$data/member" ] && state=existing
  echo "starting etcd member-$i on 127.0.0.1:$cp (log: $LOGDIR/etcd-member-$i.log)"
  nohup etcd --name "member-$i" --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" \
    --initial-cluster-token "cube-etcd-$port" \
    --auto-compaction-mode periodic --auto-compaction-retention 10m \
    >"$LOGDIR/etcd-member-$i.log" 2>&1 &
  echo $! >"$data.pid"
done

# a member answers healthy only once the cluster has a leader: wait for every one
for i in $(seq 0 $((members - 1))); do
  cp=$(client_port "$i")
  for _ in $(seq 1 100); do
    healthy "$cp" && break
    sleep 0.2
  done
  healthy "$cp" || { echo "etcd member-$i did not come up"; tail -20 "$LOGDIR/etcd-member-$i.log"; exit 1; }
done
etcd --version | sed -n 1p  # sed reads it all: head could end etcd with SIGPIPE (141 under pipefail)
echo "$urls"
