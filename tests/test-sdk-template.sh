#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks that a third party can build a skill from what we install: installs
# the build into a scratch DESTDIR, copies the installed skill template out
# of tree, builds it with make against the installed swarmharness-skill.pc
# only, checks what the plugin exports, and loads it with a small host that
# runs one job through execute() and verify().
#
# Usage: test-sdk-template.sh BUILD_ROOT SOURCE_ROOT LIBDIR INCLUDEDIR DATADIR SANITIZE
set -eu

build=$1 source=$2 libdir=$3 includedir=$4 datadir=$5 sanitize=$6

if [ "$sanitize" != none ]; then
	# The installed library then needs the sanitizer runtime, which an
	# ordinary out-of-tree build does not link; the plain build covers this.
	echo "SKIP: sanitizer build ($sanitize), the template is built against a plain SDK"
	exit 77
fi
for tool in make cc nm pkg-config; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

dest=$(mktemp -d /tmp/swarmharness-template-XXXXXX)
cleanup() {
	rm -rf "$dest"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

DESTDIR=$dest/root meson install -C "$build" --no-rebuild --quiet >/dev/null \
	|| fail "meson install into DESTDIR failed"
root=$dest/root

for f in \
	"$includedir/swarm/skill.h" \
	"$libdir/pkgconfig/swarmharness-skill.pc" \
	"$libdir/libswarmharness-skill.so"
do
	[ -e "$root$f" ] || fail "$f not installed"
	echo "ok: $f"
done
[ ! -e "$root$includedir/swarm/swarm-host.h" ] && [ ! -e "$root$includedir/swarm-host.h" ] \
	|| fail "the host-private header is installed"

# The template ships whole and unchanged.
doc=$datadir/doc/swarmharness/skill-template
for f in Makefile example.c README.md; do
	cmp -s "$source/sdk/template/$f" "$root$doc/$f" || fail "$doc/$f missing or differs from sdk/template/$f"
done
echo "ok: $doc"

# Only the installed .pc, its paths rewritten into DESTDIR by the sysroot.
PKG_CONFIG_LIBDIR=$root$libdir/pkgconfig
PKG_CONFIG_SYSROOT_DIR=$root
PKG_CONFIG_PATH=
export PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
pkg-config --exists swarmharness-skill || fail "pkg-config does not find the installed swarmharness-skill.pc"
case "$(pkg-config --cflags swarmharness-skill)" in
	*"-I$root$includedir"*) ;;
	*) fail "Cflags do not point at the installed headers: $(pkg-config --cflags swarmharness-skill)" ;;
esac

work=$dest/my-skill
cp -r "$root$doc" "$work"
make -C "$work" >"$dest/make.log" 2>&1 || { cat "$dest/make.log" >&2; fail "make of the template failed"; }
[ -f "$work/example.so" ] || fail "make did not produce example.so"
echo "ok: template builds out of tree"

# The plugin exports its entry point and nothing else of the SDK's
# namespace (the SDK's own functions come from libswarmharness-skill).
exports=$(nm -D --defined-only "$work/example.so" | awk '{ print $NF }' | grep '^swarm_' || true)
[ "$exports" = swarm_skill_entry ] || fail "example.so exports swarm_* symbols other than swarm_skill_entry: $exports"
echo "ok: exports only swarm_skill_entry"

# make install stages into DESTDIR/skilldir.  Without the sysroot: pkgconf
# would prefix it to --variable=skilldir as well.
skilldir=$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=skilldir swarmharness-skill)
PKG_CONFIG_SYSROOT_DIR= make -C "$work" DESTDIR="$dest/stage" install >/dev/null \
	|| fail "make install failed"
[ -f "$dest/stage$skilldir/example.so" ] || fail "make install did not put example.so in $skilldir"
echo "ok: make install into $skilldir"

# A minimal host: the public API plus the host-private job set-up, as
# swarm-worker and swarmctl use it.
cat >"$dest/host.c" <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "swarm-host.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); return 1; } } while (0)

int main(int argc, char **argv) {
        const uint64_t shape[2] = { 2, 3 };
        const float x[6] = { 1, -2, 3.5f, 0, 1e6f, -0.25f };
        const struct swarm_skill *skill;
        struct swarm_values *config, *inputs, *advert;
        struct swarm_tensor t, y;
        swarm_skill_entry_fn entry;
        struct swarm_job job;
        uint64_t price;
        const char *s;
        void *module, *state = NULL;

        CHECK(argc == 2);
        module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!module) {
                fprintf(stderr, "dlopen: %s\n", dlerror());
                return 1;
        }
        entry = (swarm_skill_entry_fn) dlsym(module, SWARM_SKILL_ENTRY_SYMBOL);
        CHECK(entry);
        skill = entry();
        CHECK(skill);
        CHECK(SWARM_SKILL_ABI_MAJOR_OF(skill->abi_version) == SWARM_SKILL_ABI_MAJOR);
        CHECK(skill->struct_size == sizeof(struct swarm_skill));
        CHECK(strcmp(skill->name, "example.scale") == 0);
        CHECK(skill->init && skill->advertise && skill->price && skill->execute && skill->verify);

        config = swarm_values_new();
        CHECK(skill->init(config, &state) == 0);
        advert = swarm_values_new();
        CHECK(skill->advertise(state, advert) == 0);
        CHECK(swarm_values_get_string(advert, "device", &s) == 0 && strcmp(s, "cpu") == 0);

        inputs = swarm_values_new();
        CHECK(swarm_values_add_tensor(inputs, "x", SWARM_DTYPE_F32, 2, shape, &t) == 0);
        memcpy(t.data, x, sizeof(x));
        CHECK(swarm_values_set_int(inputs, "factor", -3) == 0);
        CHECK(skill->price(state, inputs, &price) == 0 && price >= 1);

        CHECK(swarm_job_init(&job, inputs, 0, NULL, NULL, NULL) == 0);
        CHECK(skill->execute(state, &job) == 0);
        CHECK(swarm_values_get_tensor(swarm_job_outputs(&job), "y", &y) == 0);
        CHECK(y.ndim == 2 && y.shape[0] == 2 && y.shape[1] == 3);
        for (int i = 0; i < 6; i++)
                CHECK(((const float *) y.data)[i] == x[i] * -3.0f);
        CHECK(skill->verify(state, &job) == 0);
        /* A wrong element is caught (a small tensor is checked whole). */
        ((float *) y.data)[4] += 1;
        CHECK(skill->verify(state, &job) == -EBADMSG);
        CHECK(swarm_job_error(&job) != NULL);
        swarm_job_done(&job);

        /* A missing factor is refused with a reason. */
        swarm_values_free(inputs);
        inputs = swarm_values_new();
        CHECK(swarm_values_add_tensor(inputs, "x", SWARM_DTYPE_F32, 2, shape, NULL) == 0);
        CHECK(swarm_job_init(&job, inputs, 0, NULL, NULL, NULL) == 0);
        CHECK(skill->execute(state, &job) == -EINVAL);
        CHECK(swarm_job_error(&job) != NULL);
        swarm_job_done(&job);

        skill->fini(state);
        swarm_values_free(inputs);
        swarm_values_free(advert);
        swarm_values_free(config);
        dlclose(module);
        printf("example.scale: execute and verify ok\n");
        return 0;
}
EOF
# swarm-host.h is not installed; the host takes it from the source tree and
# everything else from the installed SDK.
cc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror $(pkg-config --cflags swarmharness-skill) -I"$source/sdk/lib" \
	-o "$dest/host" "$dest/host.c" $(pkg-config --libs swarmharness-skill) -ldl \
	|| fail "the test host does not build against the installed SDK"
LD_LIBRARY_PATH=$root$libdir "$dest/host" "$work/example.so" || fail "example.so does not run a job"
echo "ok: example.so loads, executes and verifies"

# What the README and the template's README tell a skill author to run,
# with the swarmctl and swarm-worker of this build.
if [ -n "${SWARMCTL:-}" ]; then
	"$SWARMCTL" skill inspect "$work/example.so" >"$dest/inspect.log" 2>&1 \
		|| { cat "$dest/inspect.log" >&2; fail "swarmctl skill inspect ./example.so failed"; }
	grep -q "Skill:        example.scale" "$dest/inspect.log" || fail "inspect does not name example.scale"
	grep -q "  x  *f32 tensor \[any\]  *required" "$dest/inspect.log" || fail "inspect shows no declared input x"
	"$SWARMCTL" skill run "$work/example.so" --input x=random:f32:8 --input factor=int:3 >"$dest/run.log" 2>&1 \
		|| { cat "$dest/run.log" >&2; fail "swarmctl skill run ./example.so failed"; }
	grep -q "verify      passed" "$dest/run.log" || fail "the template's job did not verify"
	# Asked by its skill name, with the template's directory on the path.
	SWARM_SKILL_PATH=$work "$SWARMCTL" skill inspect example.scale >/dev/null 2>&1 \
		|| fail "skill inspect example.scale does not find example.so"
	echo "ok: swarmctl skill inspect/run ./example.so as the README says"
fi

echo "sdk-template: all checks passed"
