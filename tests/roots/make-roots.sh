#!/usr/bin/env bash
# Creates the userland matrix the tests use: debootstrap --variant=minbase roots under
# ${LEAKTOOLS_ROOTS:-/var/tmp/leaktools-roots}/<suite>, one per suite, each with what the tests need
# inside (gcc for suites whose glibc is older than the host's, libc6-dbg, glibc-source).
# A root is built in <suite>.tmp.<pid> and renamed into place only when complete, so a half-made
# root is never reused; an existing <suite> folder is kept as it is.
# The mirror is the one apt on this machine already uses (read from its sources), never a name
# written here. Usage: make-roots.sh [suite...]   (default: bullseye trixie sid)
set -uo pipefail
base=${LEAKTOOLS_ROOTS:-/var/tmp/leaktools-roots}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye trixie sid)
mkdir -p "$base"

mirror_from_apt() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: the first URIs line of a stanza whose suites are not *-security
    uri=$(awk '
      /^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u=""; s=""; next }
      /^URIs:/ { u=$2 } /^Suites:/ { s=$0 }
      END { if (u != "" && s !~ /security/) print u }' "$f" | head -n 1)
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

mirror=$(mirror_from_apt) || { echo "make-roots: no Debian mirror in apt's sources" >&2; exit 1; }
host_glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
rc=0
for suite in "${suites[@]}"; do
  dest="$base/$suite"
  # One maker per suite at a time (another run may be making it now: wait for it, then reuse).
  exec 9>"$base/$suite.lock"
  flock 9
  if [ -e "$dest/.leaktools-root-complete" ]; then echo "==> root $suite: cached"; exec 9>&-; continue; fi
  tmp="$base/$suite.tmp.$$"
  rm -rf "$base/$suite".tmp.*
  echo "==> root $suite: debootstrap"
  start=$SECONDS
  if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$base/$suite.log" 2>&1; then
    echo "make-roots: debootstrap $suite failed (see $base/$suite.log)" >&2; rm -rf "$tmp"; rc=1; continue
  fi
  glibc=$(chroot "$tmp" getconf GNU_LIBC_VERSION | awk '{print $2}')
  extra=(libc6-dbg glibc-source)
  # Host binaries need the host's glibc symbols: on an older root build inside it.
  if [ "$(printf '%s\n%s\n' "$glibc" "$host_glibc" | sort -V | head -n 1)" != "$host_glibc" ]; then extra+=(gcc g++ libc6-dev); fi
  if ! DEBIAN_FRONTEND=noninteractive chroot "$tmp" sh -c "apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq --no-install-recommends ${extra[*]}" >>"$base/$suite.log" 2>&1; then
    echo "make-roots: packages in $suite failed (see $base/$suite.log)" >&2; rm -rf "$tmp"; rc=1; continue
  fi
  # The malloc source of this release, unpacked once (the tarball is large; keep malloc/ and include/).
  src=$(ls "$tmp"/usr/src/glibc/glibc-*.tar.xz 2>/dev/null | head -n 1)
  if [ -n "$src" ]; then
    mkdir -p "$tmp/usr/src/glibc/malloc-src"
    tar -xJf "$src" -C "$tmp/usr/src/glibc/malloc-src" --wildcards '*/malloc/*' '*/version.h' 2>>"$base/$suite.log" || true
    rm -f "$src"
  fi
  chroot "$tmp" apt-get clean >/dev/null 2>&1
  mkdir -p "$tmp/tmp"; chmod 1777 "$tmp/tmp"
  echo "$suite $glibc" >"$tmp/.leaktools-root-complete"
  mv -T "$tmp" "$dest" || { rm -rf "$tmp"; rc=1; continue; }
  echo "==> root $suite: glibc $glibc in $((SECONDS - start)) s"
  exec 9>&-
done
exit $rc
