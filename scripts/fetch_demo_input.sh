#!/usr/bin/env bash
# Prints the path of the demo clip: OpenCV's vtest.avi (768x576, 10 fps, people walking
# in a mall), taken from Debian's opencv-doc package and cached under data/.
# Prints nothing (and exits 1) when it cannot be had; the caller falls back to a generated scene.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=data/vtest.avi
if [ -s "$dest" ]; then echo "$PWD/$dest"; exit 0; fi
mkdir -p data
for f in /usr/share/doc/opencv-doc/examples/data/vtest.avi; do
    [ -s "$f" ] && cp "$f" "$dest.tmp" && mv "$dest.tmp" "$dest" && echo "$PWD/$dest" && exit 0
done
command -v apt-get >/dev/null || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && timeout 300 apt-get download opencv-doc >/dev/null 2>&1 ) || exit 1
deb=$(ls "$tmp"/opencv-doc_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || exit 1
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/share/doc/opencv-doc/examples/data/vtest.avi 2>/dev/null || exit 1
mv "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$dest" && echo "$PWD/$dest"
