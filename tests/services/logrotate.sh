# logrotate 3.21 (Debian), gzip and zstd: the agent's differential log-rotation tests run
# the real logrotate next to caretaker, and compare archives with gzip/zstd.
# Nothing to start and nothing to export: the tests call /usr/sbin/logrotate directly.
need_packages logrotate gzip zstd
command -v logrotate >/dev/null || fail "logrotate did not install"
