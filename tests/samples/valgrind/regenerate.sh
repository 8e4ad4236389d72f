#!/usr/bin/env bash
# Regenerates the valgrind samples in this folder with the machine's valgrind (3.19 on Debian 12)
# and gcc/g++. The binaries are built in /tmp/leaktools-samples so the paths in the reports stay
# short and stable. The seed-*.txt files are excerpts of the seed tutorial and are not generated.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../../fixtures" && pwd)
work=/tmp/leaktools-samples
rm -rf "$work" && mkdir -p "$work" && cd "$work"
cp "$fixtures/memwatch-memory.c" "$fixtures/valgrind-threads.c" "$fixtures/valgrind-stripped.c" \
   "$here/src/segv.c" "$here/src/mismatch.cpp" "$here/threads.supp" .
gcc -O0 -g -o memwatch-memory memwatch-memory.c
gcc -O0 -g -o valgrind-threads valgrind-threads.c -lpthread
gcc -O0 -g -s -o valgrind-stripped valgrind-stripped.c
gcc -O0 -g -o segv segv.c
g++ -O0 -g -o mismatch mismatch.cpp

vg() { valgrind --tool=memcheck "$@" || true; }
xml() { local name=$1; shift; vg --xml=yes --xml-file="$name.xml" --log-file=/dev/null "$@" >/dev/null; }
text() { local name=$1; shift; vg --log-file="$name.txt" "$@" >/dev/null 2>&1; }

xml  memwatch --leak-check=full ./memwatch-memory
text memwatch --leak-check=full ./memwatch-memory
xml  threads --leak-check=full --show-leak-kinds=all --track-origins=yes ./valgrind-threads
text threads --leak-check=full --show-leak-kinds=all --track-origins=yes ./valgrind-threads
# -v -s: the error list at the end repeats every error ("N errors in context X of Y"), plus
# used_suppression lines
text threads-verbose -v -s --leak-check=full ./valgrind-threads
xml  threads-suppressed --leak-check=full --suppressions=threads.supp ./valgrind-threads
text threads-suppressed -s --leak-check=full --suppressions=threads.supp ./valgrind-threads
# -v -v prints "Reading syms from X" with "svma ..., avma ..." (load addresses): ModuleOffset
text stripped -v -v --leak-check=full ./valgrind-stripped
vg --xml=yes --xml-file=stripped.xml --log-file=stripped.log -v -v --leak-check=full ./valgrind-stripped
xml  segv --leak-check=full --gen-suppressions=all ./segv
text segv --leak-check=full --gen-suppressions=all ./segv
xml  mismatch --leak-check=full --show-leak-kinds=all ./mismatch
text mismatch --leak-check=full --show-leak-kinds=all ./mismatch
# a report cut off in the middle of an <error> (valgrind killed, disk full)
head -c "$(( $(grep -b -o '<kind>Leak_IndirectlyLost' threads.xml | head -1 | cut -d: -f1) + 40 ))" threads.xml > threads-truncated.xml
cp ./*.xml ./*.txt stripped.log "$here"/
echo "samples written to $here"
