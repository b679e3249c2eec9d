#!/usr/bin/env bash
# check-report.sh [--self-test] REPORT.html: opens an HTML report of `mirrormm ... --report`
# in headless Chromium and fails (status 1, with the reason) unless
#   - the page drew every plot without a script error, rejected promise or console.error
#     (the page writes each as "REPORT-ERROR: ..." into itself and sets #report-status to
#     "report-rendered" only after a clean render; --dump-dom shows both), and
#   - its screenshot is not blank: more than 16 distinct colours and at least 1% of the
#     pixels off the background (scripts/png-colors.py).
# --self-test also makes broken copies of the report (a script that throws, a console.error,
# an unparsable data blob) and fails unless the check rejects each of them.
# The screenshot is left next to the report as REPORT.png.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self_test=0
if [ "${1:-}" = --self-test ]; then
  self_test=1
  shift
fi
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 [--self-test] REPORT.html" >&2
  exit 2
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "check-report: no chromium found (scripts/setup.sh installs Debian's chromium)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs Chromium headless on file $1 with extra arguments; prints its standard output.
chrome() {
  local page=$1
  shift
  local profile
  profile=$(mktemp -d -p "$work")
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
    --virtual-time-budget=10000 "$@" "file://$(realpath "$page")" 2>"$work/stderr.txt"
}

# Checks one page; prints why it fails and returns 1, or returns 0.
check() {
  local page=$1 png=$2
  chrome "$page" --dump-dom >"$work/dom.html" || { echo "chromium failed on $page:"; tail -5 "$work/stderr.txt"; return 1; }
  if grep -q "REPORT-ERROR:" "$work/dom.html"; then
    echo "$page: the page reported errors:"
    grep -o "REPORT-ERROR:[^<]*" "$work/dom.html" | head -5
    return 1
  fi
  if ! grep -q 'id="report-status">report-rendered<' "$work/dom.html"; then
    echo "$page: the page did not finish drawing (#report-status: $(grep -o 'id="report-status">[^<]*' "$work/dom.html" || echo missing))"
    return 1
  fi
  rm -f "$png"
  chrome "$page" --window-size=1280,1600 --hide-scrollbars --screenshot="$png" >/dev/null || true
  if [ ! -s "$png" ]; then
    echo "$page: no screenshot was taken"
    return 1
  fi
  local colors
  if ! colors=$(python3 "$here/png-colors.py" "$png" 16 1); then
    echo "$page: the screenshot looks blank ($colors)"
    return 1
  fi
  echo "$page: rendered without errors; screenshot $png: $colors"
}

report=$1
check "$report" "${report%.html}.png"
if [ "$self_test" = 1 ]; then
  # Each broken copy must be rejected.
  python3 - "$report" "$work" <<'PY'
import sys
page, work = sys.argv[1], sys.argv[2]
html = open(page, encoding="utf-8").read()
broken = {
    "throws": html.replace("</body>", "<script>mirrormmNoSuchFunction();</script></body>"),
    "console-error": html.replace("</body>", "<script>console.error('deliberate');</script></body>"),
    "bad-data": html.replace('id="report-data">{', 'id="report-data">{,', 1),
}
for name, text in broken.items():
    assert text != html, name
    open(f"{work}/broken-{name}.html", "w", encoding="utf-8").write(text)
PY
  for b in throws console-error bad-data; do
    if out=$(check "$work/broken-$b.html" "$work/broken-$b.png"); then
      echo "self-test: a report with a deliberate error ($b) passed the check:"
      echo "$out"
      exit 1
    fi
    echo "self-test: the deliberate error ($b) was caught: $(echo "$out" | head -2 | tail -1)"
  done
fi
