# Headless Chromium (Debian package) for the report page test (tests/tests/report_page.rs):
# it loads the aggregator's /report from loopback, dumps the rendered DOM and takes a
# screenshot. DejaVu is the page's first font, so text metrics are the same everywhere.
need_packages chromium fonts-dejavu-core
[ -x /usr/bin/chromium ] || fail "chromium is installed but /usr/bin/chromium is missing"
/usr/bin/chromium --version >&2 || fail "chromium does not start (chromium --version failed)"
export CARETAKER_TEST_CHROMIUM=/usr/bin/chromium
