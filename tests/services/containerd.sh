# Brings up a private containerd with its CRI plugin for the image-pruning tests (sourced by
# tests/run-all.sh).
#
# containerd runs by hand (no systemd) with a config of its own: root, state and gRPC socket
# under $CARETAKER_TEST_TMP, overlayfs snapshotter, the CRI plugin enabled. No CNI is
# configured: the tests need the CRI image and runtime services, not pod networking.
# Exports CARETAKER_TEST_CONTAINERD_SOCK (the unix socket path).

need_packages containerd

ctd_dir="$CARETAKER_TEST_TMP/containerd"
mkdir -p "$ctd_dir"
# Short state dir: shim sockets live under it and must stay below the 108-byte sun_path limit.
ctd_state=$(mktemp -d /tmp/ccs.XXXXXX)
export CARETAKER_TEST_CONTAINERD_SOCK="$ctd_state/containerd.sock"
cat >"$ctd_dir/config.toml" <<TOML
version = 2
root = "$ctd_dir/root"
state = "$ctd_state/state"
disabled_plugins = []

[grpc]
  address = "$CARETAKER_TEST_CONTAINERD_SOCK"

[ttrpc]
  address = "$ctd_state/containerd.sock.ttrpc"

[debug]
  address = "$ctd_state/debug.sock"

[plugins."io.containerd.grpc.v1.cri"]
  # A name no keep glob matches, so the tests see the sandbox-image rule on its own.
  sandbox_image = "caretaker.test/pause:1"
  # The sandbox asks for oom_score_adj -998; in a nested sandbox without CAP_SYS_RESOURCE
  # runc cannot lower it, so clamp to the daemon's own value.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
TOML

/usr/bin/containerd --config "$ctd_dir/config.toml" >"$ctd_dir/containerd.log" 2>&1 &
ctd_pid=$!
CLEANUP+=("kill $ctd_pid 2>/dev/null; for _ in \$(seq 1 100); do kill -0 $ctd_pid 2>/dev/null || break; sleep 0.1; done; kill -9 $ctd_pid 2>/dev/null; umount -R '$ctd_dir/root' 2>/dev/null; rm -rf '$ctd_state'")

ctd_ready=
for _ in $(seq 1 150); do
  if ctr --address "$CARETAKER_TEST_CONTAINERD_SOCK" plugins ls 2>/dev/null | grep -E '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok'; then
    ctd_ready=1
    break
  fi
  kill -0 "$ctd_pid" 2>/dev/null || break
  sleep 0.2
done >/dev/null
if [ -z "$ctd_ready" ]; then
  ctr --address "$CARETAKER_TEST_CONTAINERD_SOCK" plugins ls 2>&1 | grep -i cri >&2 || true
  tail -n 30 "$ctd_dir/containerd.log" >&2 || true
  fail "containerd's CRI plugin did not come up on $CARETAKER_TEST_CONTAINERD_SOCK within 30 s (log: $ctd_dir/containerd.log)"
fi
echo "run-all: containerd (CRI) ready on $CARETAKER_TEST_CONTAINERD_SOCK" >&2
