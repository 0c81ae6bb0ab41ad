# A local OCI registry (Debian's docker-registry, distribution 2.8) on loopback, for the
# chart-update tests of the aggregator (aggregator/tests/chart_updates.rs): the tests push
# Helm chart artifacts into it through the distribution API and read their tags back.
#
# No authentication, filesystem storage under $CARETAKER_TEST_TMP; the tests read
# CARETAKER_TEST_REGISTRY (host:port, plain HTTP).
need_packages docker-registry curl

registry_dir="$CARETAKER_TEST_TMP/docker-registry"
mkdir -p "$registry_dir/data"
registry_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$registry_dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $registry_dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$registry_port
YAML
/usr/bin/docker-registry serve "$registry_dir/config.yml" >"$registry_dir/registry.log" 2>&1 &
registry_pid=$!
CLEANUP+=("kill $registry_pid 2>/dev/null; wait $registry_pid 2>/dev/null")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$registry_port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$registry_port/v2/" >/dev/null || { cat "$registry_dir/registry.log" >&2; fail "docker-registry did not answer on /v2/"; }
export CARETAKER_TEST_REGISTRY="127.0.0.1:$registry_port"
echo "run-all: docker-registry at $CARETAKER_TEST_REGISTRY" >&2
