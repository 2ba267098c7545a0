#!/usr/bin/env bash
# Start a real Docker engine for tests and build the offline test image cube/busybox.
#
# No registry is reachable here, so the image is imported from busybox-static:
# httpd serves /index.html and /health (200) and has no /healthfail (404), which is
# what the health-check tests need. Idempotent: safe to run again.
set -euo pipefail

LOGDIR=${LOGDIR:-/tmp/cube-ci}
mkdir -p "$LOGDIR"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
{ [ -x /bin/busybox ] && /bin/busybox --list | grep -x httpd >/dev/null; } || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$LOGDIR/apt-docker.log"
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: $LOGDIR/dockerd.log)"
  nohup dockerd --storage-driver=vfs >"$LOGDIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not come up"; tail -20 "$LOGDIR/dockerd.log"; exit 1; }
fi

if ! docker image inspect cube/busybox:latest >/dev/null 2>&1; then
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/www" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh httpd sleep echo cat ls true false kill ps env wget; do
    ln -s busybox "$root/bin/$applet"
  done
  echo '<h1>cube/busybox</h1>' >"$root/www/index.html"
  echo 'OK' >"$root/www/health"
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/bin/httpd","-f","-p","8080","-h","/www"]' \
    -c 'EXPOSE 8080/tcp' - cube/busybox:latest >/dev/null
  rm -rf "$root"
  echo "built cube/busybox:latest"
fi
docker version --format 'docker engine {{.Server.Version}} (API {{.Server.APIVersion}})'
