#!/usr/bin/env bash
# Offline look at the built book: screenshots of its pages in headless Chromium, with the JavaScript
# that the pages load from CDNs (MathJax 3, the Jupyter widget manager, RequireJS) vendored from npm
# into a *temporary copy* of the HTML. The shipped book is not changed, and nothing is put in a
# folder named _static.
#
#   .ci/offline_screenshots.sh [HTML_DIR] [OUT_DIR] [PAGE ...]
#
# HTML_DIR defaults to _build/html, OUT_DIR to _build/screenshots, the pages to every book/*.html.
# Needs Debian's `chromium` (apt-get install -y chromium) and `npm` (used once, to fetch the three
# packages into ~/.cache/diffusion_geometry/offline-js). Each page is captured 1200 px wide and up
# to 16000 px tall; look at the PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
HTML=${1:-_build/html}
OUT=${2:-_build/screenshots}
shift $(( $# > 2 ? 2 : $# ))
CACHE=${DG_OFFLINE_JS:-$HOME/.cache/diffusion_geometry/offline-js}
command -v chromium >/dev/null || { echo "needs chromium (apt-get install -y chromium)"; exit 1; }
[ -d "$HTML/book" ] || { echo "no built book in $HTML (run make book first)"; exit 1; }

if [ ! -f "$CACHE/mathjax/es5/tex-mml-chtml.js" ]; then
  mkdir -p "$CACHE" && (cd "$CACHE" && npm pack --silent mathjax@3 @jupyter-widgets/html-manager@1 requirejs@2 >/dev/null)
  for pkg in mathjax html-manager requirejs; do
    tgz=$(ls "$CACHE"/*"$pkg"-*.tgz | head -1)
    mkdir -p "$CACHE/$pkg" && tar xzf "$tgz" -C "$CACHE/$pkg" --strip-components=1
  done
fi

SITE=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$SITE"' EXIT
cp -r "$HTML"/. "$SITE"/
mkdir -p "$SITE/offline-js"
cp -r "$CACHE/mathjax" "$CACHE/html-manager" "$SITE/offline-js/"
cp "$CACHE/requirejs/require.js" "$SITE/offline-js/require.js"
find "$SITE" -name '*.html' -exec sed -i \
  -e 's#https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js#/offline-js/mathjax/es5/tex-mml-chtml.js#g' \
  -e 's#https://cdnjs.cloudflare.com/ajax/libs/require.js/[0-9.]*/require.min.js#/offline-js/require.js#g' \
  -e 's#https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@[0-9.]*/dist/embed-amd.js#/offline-js/html-manager/dist/embed-amd.js#g' \
  -e 's#integrity="sha256-[^"]*"##g' {} +

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$SITE" >/dev/null 2>&1 &
SERVER=$!
sleep 1

mkdir -p "$OUT"
PAGES=("$@")
[ ${#PAGES[@]} -gt 0 ] || PAGES=($(cd "$SITE" && ls book/*.html))
for page in "${PAGES[@]}"; do
  name=$(basename "$page" .html)
  timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --virtual-time-budget=20000 --window-size=1200,16000 \
    --screenshot="$OUT/$name.png" "http://127.0.0.1:$PORT/$page" >/dev/null 2>&1 \
    && echo "$OUT/$name.png" || echo "FAILED: $page"
done
