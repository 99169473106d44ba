#!/bin/sh
# The installed library as a user gets it: `make install` into a scratch
# prefix, tests/example.c compiled with nothing but pkg-config's flags
# (shared, and static with --static), DESTDIR staging and uninstall.
# Called by tests/test_install.c from the repository root:
#   sh tests/install_test.sh build DIR   install and compile into DIR
#   sh tests/install_test.sh run DIR [CWD]
#                                        run the example built there, from
#                                        CWD (default: here); exit 77 (skip)
#                                        without CWD/weights/fashion_mnist.onnx
# BUILD=build/san or build/tsan (set by `make test SANITIZE=1` or
# SANITIZE=thread) builds the same way, with the same sanitizer.
set -eu
mode=$1
dir=$2
prefix=$dir/usr
pc=$prefix/lib/pkgconfig
san=
flags=
case ${BUILD:-} in
build/san)
    san=SANITIZE=1
    flags="-fsanitize=address,undefined"
    ;;
build/tsan)
    san=SANITIZE=thread
    flags="-fsanitize=thread"
    ;;
esac
fail() { echo "install test: $*" >&2; exit 1; }
# A make of our own, not a sub-make of the `make test` that runs us: its
# jobserver and command-line variables are not ours to inherit.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s $san "$@"; }

case $mode in
build)
    mk install PREFIX="$prefix" >"$dir/install.log" 2>&1 || { cat "$dir/install.log"; fail "make install failed"; }
    for f in include/cnnviz.h lib/libcnnviz.a lib/libcnnviz.so lib/libcnnviz.so.0 lib/pkgconfig/cnnviz.pc bin/cnnviz \
        share/cnnviz/fashion_mnist.onnx share/cnnviz/imagenet_labels.txt; do
        [ -e "$prefix/$f" ] || fail "make install did not install $f"
    done
    # the installed program finds its default model from anywhere
    (cd / && "$prefix/bin/cnnviz" info >/dev/null 2>"$dir/info.err") ||
        { cat "$dir/info.err"; fail "the installed cnnviz does not find its default model"; }
    grep -qx "prefix=$prefix" "$pc/cnnviz.pc" || fail "cnnviz.pc does not name the prefix $prefix"
    cflags=$(PKG_CONFIG_PATH=$pc pkg-config --cflags cnnviz)
    libs=$(PKG_CONFIG_PATH=$pc pkg-config --libs cnnviz)
    echo "pkg-config cnnviz: $cflags $libs"
    # shared: the example sees only the installed header and library
    cc -std=c11 -Wall -Wextra -Werror $flags $cflags tests/example.c -o "$dir/example" $libs ||
        fail "tests/example.c does not build against the installed library"
    LD_LIBRARY_PATH=$prefix/lib ldd "$dir/example" | grep -q "$prefix/lib/libcnnviz.so" ||
        fail "the example is not linked to the installed libcnnviz.so"
    # static: libcnnviz.a and the private dependencies pkg-config lists
    slibs=$(PKG_CONFIG_PATH=$pc pkg-config --static --libs cnnviz | sed 's/-lcnnviz//')
    echo "pkg-config --static cnnviz: $slibs"
    cc -std=c11 -Wall -Wextra -Werror $flags $cflags tests/example.c -o "$dir/example_static" \
        "$prefix/lib/libcnnviz.a" $slibs || fail "the example does not link statically"
    if ldd "$dir/example_static" | grep -q libcnnviz; then
        fail "the static example still needs libcnnviz.so"
    fi
    # DESTDIR stages under a root without changing the recorded prefix
    mk install DESTDIR="$dir/stage" PREFIX=/opt/cnv >"$dir/install.log" 2>&1 ||
        { cat "$dir/install.log"; fail "make install DESTDIR failed"; }
    for f in include/cnnviz.h lib/libcnnviz.a lib/libcnnviz.so.0 lib/pkgconfig/cnnviz.pc bin/cnnviz; do
        [ -e "$dir/stage/opt/cnv/$f" ] || fail "make install DESTDIR did not stage $f"
    done
    [ "$(readlink "$dir/stage/opt/cnv/lib/libcnnviz.so")" = libcnnviz.so.0 ] ||
        fail "libcnnviz.so is not a relative link to libcnnviz.so.0"
    grep -qx "prefix=/opt/cnv" "$dir/stage/opt/cnv/lib/pkgconfig/cnnviz.pc" ||
        fail "the staged cnnviz.pc does not name /opt/cnv"
    mk uninstall DESTDIR="$dir/stage" PREFIX=/opt/cnv >"$dir/install.log" 2>&1 ||
        { cat "$dir/install.log"; fail "make uninstall DESTDIR failed"; }
    left=$(find "$dir/stage" -type f -o -type l)
    [ -z "$left" ] || fail "make uninstall left: $left"
    echo "install test: installed, built shared and static, staged and uninstalled"
    ;;
run)
    cd "${3:-.}"
    if [ ! -f weights/fashion_mnist.onnx ]; then
        echo "install test: weights/fashion_mnist.onnx is absent (make weights); not running the example"
        exit 77
    fi
    LD_LIBRARY_PATH=$prefix/lib "$dir/example" || fail "the example (shared) failed"
    "$dir/example_static" || fail "the example (static) failed"
    echo "install test: the example ran (shared and static) on $(pwd)/weights/fashion_mnist.onnx"
    ;;
*)
    fail "unknown mode $mode"
    ;;
esac
