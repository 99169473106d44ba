# libcnnviz — one plain Makefile.
#   make                      libraries (lib/) and the program (bin/cnnviz)
#   make test                 build and run every test (non-zero exit on failure)
#   make test SANITIZE=1      the same under ASan + UBSan
#   make test SANITIZE=thread the same under ThreadSanitizer
#   make install PREFIX=/usr/local
#   make valgrind             the suite under valgrind memcheck

PREFIX ?= /usr/local
CC ?= cc
PKGS := openblas stb fftw3f

CFLAGS ?= -O3 -g
# No code here enables floating-point traps, so the compiler may assume
# none: it then turns comparisons into selects and vectorizes the loops
# that use them (results are the same IEEE operations).
CFLAGS += -fno-trapping-math
CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fPIC -fvisibility=hidden -MMD -MP
CFLAGS += -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS))
LDLIBS := $(shell pkg-config --libs $(PKGS)) -lgif -lz -lm -lpthread

ifeq ($(SANITIZE),1)
  BUILD := build/san
  CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZE),thread)
  BUILD := build/tsan
  CFLAGS += -fsanitize=thread
  LDFLAGS += -fsanitize=thread
else
  BUILD := build/rel
endif

# src/<layer>/*.c and src/engine/ops/*.c (README.md, Architecture)
LIB_SRC := $(wildcard src/*/*.c src/*/*/*.c)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/src/%.o)
CLI_SRC := $(wildcard tools/*.c)
CLI_OBJ := $(CLI_SRC:tools/%.c=$(BUILD)/tools/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TESTLIB_SRC := $(wildcard tests/util/*.c)
TESTLIB_OBJ := $(TESTLIB_SRC:tests/util/%.c=$(BUILD)/tests/util/%.o)

# The static library the tests link: it sees internal (hidden) symbols.
STATIC := $(BUILD)/libcnnviz.a

.PHONY: all test install uninstall clean valgrind fuzz weights demo bench
# Objects are kept (not deleted as intermediates), so a second `make test`
# links nothing again. (Not every target: a missing mode stamp must still
# be made, so that lib/ and bin/ are rebuilt after a sanitizer run.)
.SECONDARY: $(LIB_OBJ) $(CLI_OBJ) $(TESTLIB_OBJ) $(TEST_BIN) $(STATIC)
all: lib/libcnnviz.a lib/libcnnviz.so bin/cnnviz

$(BUILD)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/tests/util/%.o: tests/util/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/util -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# lib/ and bin/ hold one build (release or sanitizer) at a time; a stamp
# per build makes a switch rebuild them rather than keep the other's.
MODE_STAMP := $(BUILD)/.lib-stamp
$(MODE_STAMP):
	@mkdir -p $(BUILD) && rm -f build/*/.lib-stamp && touch $@

lib/libcnnviz.a: $(STATIC) $(MODE_STAMP)
	@mkdir -p lib
	cp $< $@
lib/libcnnviz.so: $(LIB_OBJ) $(MODE_STAMP)
	@mkdir -p lib
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libcnnviz.so.0 -o $@ $(LIB_OBJ) $(LDLIBS)

bin/cnnviz: $(CLI_OBJ) $(STATIC) $(MODE_STAMP)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TESTLIB_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/util $(LDFLAGS) -o $@ $< $(TESTLIB_OBJ) $(STATIC) $(LDLIBS) -lcmocka

test: $(TEST_BIN) bin/cnnviz lib/libcnnviz.so lib/libcnnviz.a
	@BUILD=$(BUILD) sh tests/run.sh $(TEST_BIN)

valgrind: $(TEST_BIN) bin/cnnviz
	@BUILD=$(BUILD) VALGRIND=1 sh tests/run.sh $(TEST_BIN)

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/cnnviz.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 lib/libcnnviz.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 lib/libcnnviz.so $(DESTDIR)$(PREFIX)/lib/libcnnviz.so.0
	ln -sf libcnnviz.so.0 $(DESTDIR)$(PREFIX)/lib/libcnnviz.so
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: cnnviz\nDescription: see what a trained convolutional network has learned\nVersion: 0.2.0\nRequires.private: openblas fftw3f\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lcnnviz\nLibs.private: -lstb -lgif -lz -lm -lpthread\n' '$(PREFIX)' \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cnnviz.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/cnnviz.pc
	install -m 755 bin/cnnviz $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/cnnviz
	install -m 644 weights/fashion_mnist.onnx weights/imagenet_labels.txt $(DESTDIR)$(PREFIX)/share/cnnviz/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/cnnviz.h $(DESTDIR)$(PREFIX)/lib/libcnnviz.a \
	      $(DESTDIR)$(PREFIX)/lib/libcnnviz.so $(DESTDIR)$(PREFIX)/lib/libcnnviz.so.0 \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/cnnviz.pc $(DESTDIR)$(PREFIX)/bin/cnnviz \
	      $(DESTDIR)$(PREFIX)/share/cnnviz/fashion_mnist.onnx $(DESTDIR)$(PREFIX)/share/cnnviz/imagenet_labels.txt
	-rmdir $(DESTDIR)$(PREFIX)/share/cnnviz 2>/dev/null

clean:
	rm -rf build lib/*.a lib/*.so bin cnnviz.pc

-include $(shell find build -name '*.d' 2>/dev/null)

# libFuzzer harnesses (fuzz/*.c, see fuzz/README.md): the library compiled
# with coverage, ASan and UBSan into build/fuzz; needs clang.
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS))
FUZZ_OBJ := $(LIB_SRC:src/%.c=build/fuzz/src/%.o)
FUZZ_BIN := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))
fuzz: $(FUZZ_BIN)
build/fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build/fuzz/libcnnviz.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
# stb_image 2.27 writes past its Huffman tables (inside one struct) on JPEGs
# (docs/SECURITY.md); that check reports and goes on, so fuzzing can reach
# further; so does its NULL + 0 on an empty PNG IDAT (harmless). ASan still
# stops on anything outside an object.
build/fuzz/stb_impl.o: fuzz/stb_impl.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -fsanitize-recover=bounds,pointer-overflow -fsanitize=fuzzer-no-link -w -c $< -o $@
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h fuzz/fuzz_run.h build/fuzz/libcnnviz.a build/fuzz/stb_impl.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/stb_impl.o \
	    build/fuzz/libcnnviz.a $(LDLIBS)

# Retrains the shipped model weights/fashion_mnist.onnx from the
# dataset-fashion-mnist package (docs/TRAINING.md: time and accuracy).
weights: bin/cnnviz
	@mkdir -p weights
	bin/cnnviz train --data /usr/share/datasets/fashion-mnist --seed 1 -o weights/fashion_mnist.onnx

# The main job on the default model, into out/: class models of all ten
# Fashion-MNIST classes as one labeled sheet, a saliency overlay and a
# fooling example on a test image from Debian's dataset.
demo: all
	@mkdir -p out
	bin/cnnviz classmodel --classes 0,1,2,3,4,5,6,7,8,9 --grid out/classmodels.png --tile 112 --quiet
	bin/cnnviz sample --index 0 -o out/ankle_boot.png
	bin/cnnviz saliency out/ankle_boot.png --method all --sheet out/saliency.png
	bin/cnnviz fool out/ankle_boot.png --target Sneaker -o out/fooled.png --sheet out/fooling.png --tile 112 --quiet
	@echo "demo pictures are in out/"
