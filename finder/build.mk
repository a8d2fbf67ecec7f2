# finder/build.mk - the finder: its core (the cut algorithm, no I/O), the
# file store, the RESP server, and dpr-finder. Public headers (used by the
# agent, which hosts the finder): finder/include/dpr/. Private: finder/src/.
#
# Included by the top-level Makefile.

FINDER_SRC = $(filter-out finder/src/main.c,$(sort $(wildcard finder/src/*.c)))
FINDER_A = $(BUILD)/libdprfinder.a
FINDER_BIN = $(BUILD)/dpr-finder
FINDER_LIBS = $(LIBDPR_LIBS) $(COMMON_LIBS) -lm

$(BUILD)/obj/finder/%.o: CPPFLAGS += -Ifinder/include -Ifinder/src
$(BUILD)/obj/tests/finder/%.o: CPPFLAGS += -Ifinder/include -Ifinder/src

$(FINDER_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(FINDER_SRC))
	@rm -f $@
	ar rcs $@ $^

# main.c prints VERSION for --version
VALUE_OBJS += $(BUILD)/obj/finder/src/main.o
$(FINDER_BIN): $(BUILD)/obj/finder/src/main.o $(FINDER_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(FINDER_LIBS)

UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/finder/test_*.c))

$(BUILD)/tests/finder/test_%: $(BUILD)/obj/tests/finder/test_%.o $(FINDER_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FINDER_LIBS)

FUZZ_BINS += build/fuzz/fuzz_finder_cmd
build/fuzz/fuzz_finder_cmd: tests/finder/fuzz_finder_cmd.c $(FINDER_SRC) $(LIBDPR_SRC) $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Ifinder/include -Ifinder/src $(FUZZ_CFLAGS) -o $@ $^ $(FINDER_LIBS)

FUZZ_BINS += build/fuzz/fuzz_store_image
build/fuzz/fuzz_store_image: tests/finder/fuzz_store_image.c $(FINDER_SRC) $(LIBDPR_SRC) $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Ifinder/include -Ifinder/src $(FUZZ_CFLAGS) -o $@ $^ $(FINDER_LIBS)
