# Brings up a private Docker engine for the image-pruning tests (sourced by tests/run-all.sh).
#
# dockerd runs by hand (no systemd) with its own data root, exec root and socket under
# $CARETAKER_TEST_TMP, no iptables and no bridge (nothing on the host network changes),
# overlay2 storage as on real nodes. It spawns its own managed containerd under the exec root.
# Exports CARETAKER_TEST_DOCKER_SOCK (the unix socket path) and CARETAKER_TEST_BUSYBOX (a
# static busybox binary the tests put into FROM scratch images).

need_packages docker.io busybox-static

docker_dir="$CARETAKER_TEST_TMP/docker"
mkdir -p "$docker_dir"
export CARETAKER_TEST_DOCKER_SOCK="$docker_dir/docker.sock"
export CARETAKER_TEST_BUSYBOX=/bin/busybox
[ -x "$CARETAKER_TEST_BUSYBOX" ] || fail "busybox-static is installed but $CARETAKER_TEST_BUSYBOX is missing"

# Short exec root: containerd's socket path under it must stay below the 108-byte sun_path limit.
docker_exec_root=$(mktemp -d /tmp/ctd.XXXXXX)
/usr/sbin/dockerd \
  --data-root "$docker_dir/data" \
  --exec-root "$docker_exec_root" \
  --pidfile "$docker_dir/dockerd.pid" \
  -H "unix://$CARETAKER_TEST_DOCKER_SOCK" \
  --iptables=false --ip6tables=false --bridge=none \
  --storage-driver=overlay2 \
  >"$docker_dir/dockerd.log" 2>&1 &
docker_pid=$!
CLEANUP+=("kill $docker_pid 2>/dev/null; for _ in \$(seq 1 100); do kill -0 $docker_pid 2>/dev/null || break; sleep 0.1; done; kill -9 $docker_pid 2>/dev/null; umount -R '$docker_dir/data' 2>/dev/null; rm -rf '$docker_exec_root'")

docker_ready=
for _ in $(seq 1 150); do
  if curl -fsS --unix-socket "$CARETAKER_TEST_DOCKER_SOCK" http://localhost/_ping 2>/dev/null | grep -q OK; then
    docker_ready=1
    break
  fi
  kill -0 "$docker_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$docker_ready" ]; then
  tail -n 30 "$docker_dir/dockerd.log" >&2 || true
  fail "dockerd did not answer /_ping on $CARETAKER_TEST_DOCKER_SOCK within 30 s (log: $docker_dir/dockerd.log)"
fi
echo "run-all: dockerd ready on $CARETAKER_TEST_DOCKER_SOCK" >&2
