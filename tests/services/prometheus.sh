# Real Prometheus and Alertmanager (Debian packages) on loopback, for the external-signal
# tests of the aggregator.
#
# Prometheus scrapes every 1 s whatever targets the tests write into
# $CARETAKER_TEST_PROMETHEUS_TARGETS (file_sd JSON, re-read every second), so each test
# runs its own target with numbers it controls. Alertmanager takes alerts and silences the
# tests post through its API v2.
need_packages prometheus prometheus-alertmanager curl

prom_dir="$CARETAKER_TEST_TMP/prometheus"
mkdir -p "$prom_dir/data" "$prom_dir/am-data"
export CARETAKER_TEST_PROMETHEUS_TARGETS="$prom_dir/targets.json"
echo '[]' > "$CARETAKER_TEST_PROMETHEUS_TARGETS"
cat > "$prom_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: caretaker-tests
    file_sd_configs:
      - files: ['$CARETAKER_TEST_PROMETHEUS_TARGETS']
        refresh_interval: 1s
YAML
cat > "$prom_dir/alertmanager.yml" <<YAML
route:
  receiver: 'null'
  group_wait: 0s
receivers:
  - name: 'null'
YAML

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
prom_port=$(free_port)
am_port=$(free_port)
am_cluster_port=$(free_port)

prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$prom_dir/prometheus.log" 2>&1 &
prom_pid=$!
CLEANUP+=("kill $prom_pid 2>/dev/null; wait $prom_pid 2>/dev/null")
prometheus-alertmanager --config.file="$prom_dir/alertmanager.yml" --storage.path="$prom_dir/am-data" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address="127.0.0.1:$am_cluster_port" \
  >"$prom_dir/alertmanager.log" 2>&1 &
am_pid=$!
CLEANUP+=("kill $am_pid 2>/dev/null; wait $am_pid 2>/dev/null")

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$am_port/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null || { cat "$prom_dir/prometheus.log" >&2; fail "Prometheus did not become ready"; }
curl -sf "http://127.0.0.1:$am_port/-/ready" >/dev/null || { cat "$prom_dir/alertmanager.log" >&2; fail "Alertmanager did not become ready"; }
export CARETAKER_TEST_PROMETHEUS_URL="http://127.0.0.1:$prom_port"
export CARETAKER_TEST_ALERTMANAGER_URL="http://127.0.0.1:$am_port"
echo "run-all: Prometheus at $CARETAKER_TEST_PROMETHEUS_URL, Alertmanager at $CARETAKER_TEST_ALERTMANAGER_URL" >&2
