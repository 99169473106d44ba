#!/bin/sh
# Runs every test program given, then prints one summary line over all of
# them: "N passed, N failed, N skipped" (test cases, summed from cmocka's
# per-program summaries, every group of each). A program that crashes or exits non-zero without a
# cmocka summary counts as one failure. VALGRIND=1 runs each under memcheck.
passed=0 failed=0 skipped=0 broken=""
log=$(mktemp)
for t in "$@"; do
    if [ -n "$VALGRIND" ]; then
        # valgrind runs one thread at a time: spinning worker threads
        # (OpenBLAS's, the sessions') would only slow everything down
        OPENBLAS_NUM_THREADS=1 CNNVIZ_NUM_THREADS=1 CNNVIZ_UNDER_VALGRIND=1 valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --suppressions=tests/valgrind.supp "$t" >"$log" 2>&1
    else
        "$t" >"$log" 2>&1
    fi
    rc=$?
    cat "$log"
    # a program may run several groups: add up their summaries
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ $rc -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
        failed=$((failed + 1)); broken="$broken $t(exit $rc)"
    fi
done
rm -f "$log"
[ -n "$broken" ] && echo "programs that failed outside a test case:$broken"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
