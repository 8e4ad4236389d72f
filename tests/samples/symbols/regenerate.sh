#!/bin/sh
# Regenerates the checked-in symbolizer samples from tests/fixtures/symbols and records what
# binutils addr2line (-a -f -C -i) and elfutils eu-addr2line (-a -i) print for a spread of
# addresses of each, so the parser tests run on fixed input without the tools.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../../fixtures/symbols
cd "$here"
build() { name=$1; shift; (cd "$src" && "$@" -o "$here/$name.elf") ; }
build dwarf5-O2 gcc -O2 -g symbols-main.c symbols-util.c
build dwarf4-O2 gcc -O2 -gdwarf-4 symbols-main.c symbols-util.c
build dwarf2-O1 gcc -O1 -gdwarf-2 -fno-pie -no-pie symbols-main.c symbols-util.c
build cpp-O2 g++ -O2 -g symbols-cpp.cpp
objcopy --compress-debug-sections=zlib dwarf5-O2.elf zlib-dwarf5.elf
objcopy --compress-debug-sections=zstd dwarf5-O2.elf zstd-dwarf5.elf
strip --strip-all dwarf5-O2.elf -o stripped-dwarf5.elf
for s in dwarf5-O2 dwarf4-O2 dwarf2-O1 cpp-O2; do
  nm -S --defined-only "$s.elf" | awk '$3 ~ /^[TtWw]$/ { print $1, $2 }' |
    while read -r start size; do
      s10=$((0x$start)); n=$((0x$size)); div=40; [ "$s" = cpp-O2 ] && div=8; step=$(( n / div + 1 )); a=$s10
      while [ $a -lt $((s10 + n)) ]; do printf '0x%x\n' $a; a=$((a + step)); done
    done | sort -u > "$s.addresses"
  addr2line -a -f -C -i -e "$s.elf" < "$s.addresses" > "$s.addr2line.txt"
  eu-addr2line -a -i -e "$s.elf" $(cat "$s.addresses") > "$s.eu-addr2line.txt"
  rm "$s.addresses"
done
