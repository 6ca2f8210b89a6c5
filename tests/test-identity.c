/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "identity.h"
#include "macro.h"

#define KEY_FILE_SIZE 72

#define TMPDIR_TEMPLATE "/tmp/test-identity-XXXXXX"

static char tmpdir[sizeof(TMPDIR_TEMPLATE)];
static char state_dir[sizeof(tmpdir) + 16];
static char key_path[sizeof(state_dir) + sizeof(IDENTITY_FILE) + 1];

/* state_dir does not exist yet: tests that need it make it. */
static void setup(void) {
        memcpy(tmpdir, TMPDIR_TEMPLATE, sizeof(tmpdir));
        cr_assert_not_null(mkdtemp(tmpdir));
        snprintf(state_dir, sizeof(state_dir), "%s/state", tmpdir);
        snprintf(key_path, sizeof(key_path), "%s/%s", state_dir, IDENTITY_FILE);
        cr_assert_eq(sodium_init() >= 0, true);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void teardown(void) {
        nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(identity, .init = setup, .fini = teardown);

/* Whole-file snapshots, to show that a refused file was left alone. */
struct blob {
        uint8_t data[256];
        size_t size;
};

static struct blob read_blob(const char *path) {
        struct blob b = {};
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
        n = read(fd, b.data, sizeof(b.data));
        cr_assert_geq(n, 0);
        b.size = (size_t) n;
        close(fd);
        return b;
}

static void write_blob(const char *path, const struct blob *b, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
        cr_assert_eq(write(fd, b->data, b->size), (ssize_t) b->size);
        cr_assert_eq(fchmod(fd, mode), 0);
        close(fd);
}

static void assert_blob_eq(const struct blob *a, const struct blob *b) {
        cr_assert_eq(a->size, b->size, "file size changed from %zu to %zu", a->size, b->size);
        cr_assert_eq(memcmp(a->data, b->data, a->size), 0, "file contents changed");
}

static void create_identity(struct identity **ret) {
        bool created = false;

        cr_assert_eq(identity_load_or_create(state_dir, ret, &created), 0);
        cr_assert(created);
}

/* Damages a freshly created key file with f, then checks that both entry
 * points refuse it with expected and leave it exactly as it was. */
static void assert_refused(int expected, void (*damage)(struct blob *b), mode_t mode) {
        _cleanup_(identity_freep) struct identity *id = NULL, *loaded = NULL, *again = NULL;
        struct blob b, after;
        bool created = true;

        create_identity(&id);
        b = read_blob(key_path);
        if (damage)
                damage(&b);
        cr_assert_eq(unlink(key_path), 0);
        write_blob(key_path, &b, mode);

        cr_assert_eq(identity_load(state_dir, &loaded), expected);
        cr_assert_null(loaded);
        cr_assert_eq(identity_load_or_create(state_dir, &again, &created), expected);
        cr_assert_null(again);
        cr_assert(created, "a refused call must leave *created alone");

        after = read_blob(key_path);
        assert_blob_eq(&b, &after);
}

Test(identity, first_start_creates_key_with_mode_0600) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        bool created = false;
        struct stat st;

        cr_assert_eq(identity_load_or_create(state_dir, &id, &created), 0);
        cr_assert(created);
        cr_assert_not_null(id);

        cr_assert_eq(lstat(key_path, &st), 0);
        cr_assert(S_ISREG(st.st_mode));
        cr_assert_eq(st.st_mode & 07777, 0600, "mode is %04o", (unsigned) (st.st_mode & 07777));
        cr_assert_eq(st.st_size, KEY_FILE_SIZE);
        cr_assert_eq(st.st_uid, geteuid());
        cr_assert_eq(st.st_nlink, 1, "the temporary name must be gone");
}

Test(identity, first_start_creates_missing_state_dir_with_mode_0700) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        struct stat st;

        cr_assert_eq(stat(state_dir, &st), -1);
        create_identity(&id);

        cr_assert_eq(stat(state_dir, &st), 0);
        cr_assert(S_ISDIR(st.st_mode));
        cr_assert_eq(st.st_mode & 07777, 0700, "mode is %04o", (unsigned) (st.st_mode & 07777));
}

Test(identity, first_start_leaves_only_the_key_in_state_dir) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        struct dirent *de;
        DIR *d;
        int n = 0;

        create_identity(&id);
        d = opendir(state_dir);
        cr_assert_not_null(d);
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                cr_expect_str_eq(de->d_name, IDENTITY_FILE);
                n++;
        }
        closedir(d);
        cr_assert_eq(n, 1);
}

Test(identity, missing_parent_of_state_dir_is_an_error) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        char dir[sizeof(tmpdir) + 32];
        struct stat st;

        snprintf(dir, sizeof(dir), "%s/no/such", tmpdir);
        cr_assert_eq(identity_load_or_create(dir, &id, NULL), -ENOENT);
        cr_assert_null(id);
        snprintf(dir, sizeof(dir), "%s/no", tmpdir);
        cr_assert_eq(stat(dir, &st), -1, "the parent must not be created");
}

Test(identity, file_holds_magic_version_seed_and_public_key) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        uint8_t seed[crypto_sign_SEEDBYTES];
        struct blob b;

        create_identity(&id);
        b = read_blob(key_path);
        cr_assert_eq(b.size, KEY_FILE_SIZE);
        cr_assert_eq(memcmp(b.data, "SWARMID", 7), 0);
        cr_assert_eq(b.data[7], 0x01);
        cr_assert_eq(crypto_sign_ed25519_sk_to_seed(seed, id->secret_key), 0);
        cr_assert_eq(memcmp(b.data + 8, seed, sizeof(seed)), 0);
        cr_assert_eq(memcmp(b.data + 40, id->public_key, crypto_sign_PUBLICKEYBYTES), 0);
        sodium_memzero(seed, sizeof(seed));
}

Test(identity, second_start_loads_the_same_key) {
        _cleanup_(identity_freep) struct identity *first = NULL, *second = NULL;
        struct blob before, after;
        bool created = true;

        create_identity(&first);
        before = read_blob(key_path);

        cr_assert_eq(identity_load_or_create(state_dir, &second, &created), 0);
        cr_assert_not(created);
        cr_assert_str_eq(second->node_id, first->node_id);
        cr_assert_eq(memcmp(second->public_key, first->public_key, sizeof(first->public_key)), 0);
        cr_assert_eq(memcmp(second->secret_key, first->secret_key, sizeof(first->secret_key)), 0);

        after = read_blob(key_path);
        assert_blob_eq(&before, &after);
}

Test(identity, load_returns_the_created_key) {
        _cleanup_(identity_freep) struct identity *created = NULL, *loaded = NULL;

        create_identity(&created);
        cr_assert_eq(identity_load(state_dir, &loaded), 0);
        cr_assert_str_eq(loaded->node_id, created->node_id);
        cr_assert_eq(memcmp(loaded->secret_key, created->secret_key, sizeof(created->secret_key)), 0);
}

Test(identity, created_may_be_null) {
        _cleanup_(identity_freep) struct identity *a = NULL, *b = NULL;

        cr_assert_eq(identity_load_or_create(state_dir, &a, NULL), 0);
        cr_assert_eq(identity_load_or_create(state_dir, &b, NULL), 0);
        cr_assert_str_eq(a->node_id, b->node_id);
}

Test(identity, node_id_is_the_public_key) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];

        create_identity(&id);
        cr_assert_eq(node_id_to_public_key(id->node_id, pk), 0);
        cr_assert_eq(memcmp(pk, id->public_key, sizeof(pk)), 0);
}

Test(identity, signature_by_loaded_key_verifies_with_its_public_key) {
        _cleanup_(identity_freep) struct identity *created = NULL, *loaded = NULL;
        static const uint8_t msg[] = "cheque: 42 credits to node x";
        uint8_t sig[crypto_sign_BYTES], pk[crypto_sign_PUBLICKEYBYTES];

        create_identity(&created);
        cr_assert_eq(identity_load(state_dir, &loaded), 0);

        cr_assert_eq(crypto_sign_detached(sig, NULL, msg, sizeof(msg), loaded->secret_key), 0);
        cr_assert_eq(crypto_sign_verify_detached(sig, msg, sizeof(msg), loaded->public_key), 0);
        /* A peer knows only the node id. */
        cr_assert_eq(node_id_to_public_key(loaded->node_id, pk), 0);
        cr_assert_eq(crypto_sign_verify_detached(sig, msg, sizeof(msg), pk), 0);

        sig[0] ^= 1;
        cr_assert_neq(crypto_sign_verify_detached(sig, msg, sizeof(msg), pk), 0);
}

Test(identity, racing_first_starts_agree_on_one_key) {
        enum { N = 8 };
        char ids[N][NODE_ID_LEN + 1];
        int fds[N][2], made = 0;

        for (int i = 0; i < N; i++) {
                pid_t pid;

                cr_assert_eq(pipe(fds[i]), 0);
                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0) {
                        struct identity *id = NULL;
                        bool created = false;
                        char out[NODE_ID_LEN + 2];

                        if (identity_load_or_create(state_dir, &id, &created) < 0)
                                _exit(1);
                        memcpy(out, id->node_id, NODE_ID_LEN);
                        out[NODE_ID_LEN] = created ? '+' : '-';
                        identity_free(id);
                        _exit(write(fds[i][1], out, NODE_ID_LEN + 1) == NODE_ID_LEN + 1 ? 0 : 1);
                }
                close(fds[i][1]);
        }

        for (int i = 0; i < N; i++) {
                char out[NODE_ID_LEN + 1];
                int status;

                cr_assert_gt(wait(&status), 0);
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                cr_assert_eq(read(fds[i][0], out, sizeof(out)), (ssize_t) sizeof(out));
                close(fds[i][0]);
                made += out[NODE_ID_LEN] == '+';
                memcpy(ids[i], out, NODE_ID_LEN);
                ids[i][NODE_ID_LEN] = '\0';
        }

        cr_assert_eq(made, 1, "%d processes claim to have created the identity", made);
        for (int i = 1; i < N; i++)
                cr_assert_str_eq(ids[i], ids[0]);
}

static void truncate_blob(struct blob *b) {
        b->size -= 1;
}

static void extend_blob(struct blob *b) {
        b->data[b->size++] = 0;
}

static void empty_blob(struct blob *b) {
        b->size = 0;
}

static void break_magic(struct blob *b) {
        b->data[0] = 'X';
}

static void break_version(struct blob *b) {
        b->data[7] = 0x02;
}

static void break_public_key(struct blob *b) {
        b->data[KEY_FILE_SIZE - 1] ^= 0x01;
}

static void break_seed(struct blob *b) {
        b->data[8] ^= 0x80;
}

Test(identity, refuses_truncated_file) {
        assert_refused(-EBADMSG, truncate_blob, 0600);
}

Test(identity, refuses_extended_file) {
        assert_refused(-EBADMSG, extend_blob, 0600);
}

Test(identity, refuses_empty_file) {
        assert_refused(-EBADMSG, empty_blob, 0600);
}

Test(identity, refuses_wrong_magic) {
        assert_refused(-EBADMSG, break_magic, 0600);
}

Test(identity, refuses_unknown_version) {
        assert_refused(-EBADMSG, break_version, 0600);
}

Test(identity, refuses_public_key_not_matching_seed) {
        assert_refused(-EBADMSG, break_public_key, 0600);
}

Test(identity, refuses_seed_not_matching_public_key) {
        assert_refused(-EBADMSG, break_seed, 0600);
}

/* Root can read any file, so these pass only through the explicit mode check. */
Test(identity, refuses_key_readable_by_all) {
        assert_refused(-EPERM, NULL, 0644);
}

Test(identity, refuses_key_readable_by_group) {
        assert_refused(-EPERM, NULL, 0640);
}

Test(identity, refuses_key_readable_by_others) {
        assert_refused(-EPERM, NULL, 0604);
}

Test(identity, refuses_key_writable_by_group) {
        assert_refused(-EPERM, NULL, 0620);
}

Test(identity, refuses_key_owned_by_another_user) {
        _cleanup_(identity_freep) struct identity *id = NULL, *loaded = NULL;
        struct blob before, after;

        if (geteuid() != 0) {
                teardown();     /* a skipped test does not run .fini */
                cr_skip_test("needs root to chown");
        }

        create_identity(&id);
        before = read_blob(key_path);

        /* A swarmd running as uid 65533 that can read a key uid 65534
         * owns (through their group) refuses it... */
        cr_assert_eq(chmod(tmpdir, 0755), 0);
        cr_assert_eq(chown(state_dir, 65533, 65533), 0);
        cr_assert_eq(chown(key_path, 65534, 65533), 0);
        cr_assert_eq(chmod(key_path, 0640), 0);
        {
                char said[1024] = "";
                int status, pipefd[2];
                ssize_t n;
                pid_t pid;

                cr_assert_eq(pipe(pipefd), 0);
                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0) {
                        struct identity *child = NULL;

                        if (dup2(pipefd[1], STDERR_FILENO) < 0 || setgroups(0, NULL) < 0 || setgid(65533) < 0 ||
                            setuid(65533) < 0)
                                _exit(2);
                        _exit(identity_load(state_dir, &child) == -EPERM &&
                              identity_load_or_create(state_dir, &child, NULL) == -EPERM && !child ? 0 : 1);
                }
                close(pipefd[1]);
                cr_assert_eq(waitpid(pid, &status, 0), pid);
                n = read(pipefd[0], said, sizeof(said) - 1);
                close(pipefd[0]);
                said[n > 0 ? n : 0] = '\0';
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a key another user owns was used: %s",
                          said);
                cr_assert(strstr(said, "is owned by uid 65534, not by uid 65533"), "refused for another reason: %s",
                          said);
        }

        /* ...while root may use the service's key (swarmd --show-identity
         * as root on a packaged install), once its mode is right. */
        cr_assert_eq(chmod(key_path, 0600), 0);
        cr_assert_eq(identity_load(state_dir, &loaded), 0);
        cr_assert_str_eq(loaded->node_id, id->node_id);

        after = read_blob(key_path);
        assert_blob_eq(&before, &after);
}

Test(identity, refuses_symlink_to_valid_key) {
        _cleanup_(identity_freep) struct identity *id = NULL, *loaded = NULL;
        char target[sizeof(tmpdir) + 32];
        struct blob before, after;
        struct stat st;

        create_identity(&id);
        snprintf(target, sizeof(target), "%s/elsewhere.key", tmpdir);
        cr_assert_eq(rename(key_path, target), 0);
        cr_assert_eq(symlink(target, key_path), 0);
        before = read_blob(target);

        cr_assert_eq(identity_load(state_dir, &loaded), -EPERM);
        cr_assert_eq(identity_load_or_create(state_dir, &loaded, NULL), -EPERM);
        cr_assert_null(loaded);

        cr_assert_eq(lstat(key_path, &st), 0);
        cr_assert(S_ISLNK(st.st_mode), "the symlink must be left in place");
        after = read_blob(target);
        assert_blob_eq(&before, &after);
}

Test(identity, refuses_dangling_symlink_without_creating_its_target) {
        _cleanup_(identity_freep) struct identity *loaded = NULL;
        char target[sizeof(tmpdir) + 32];
        struct stat st;

        cr_assert_eq(mkdir(state_dir, 0700), 0);
        snprintf(target, sizeof(target), "%s/planted.key", tmpdir);
        cr_assert_eq(symlink(target, key_path), 0);

        cr_assert_eq(identity_load_or_create(state_dir, &loaded, NULL), -EPERM);
        cr_assert_null(loaded);
        cr_assert_eq(lstat(target, &st), -1, "nothing may be written through the link");
        cr_assert_eq(lstat(key_path, &st), 0);
        cr_assert(S_ISLNK(st.st_mode));
}

Test(identity, refuses_directory_named_like_the_key) {
        _cleanup_(identity_freep) struct identity *loaded = NULL;
        struct stat st;

        cr_assert_eq(mkdir(state_dir, 0700), 0);
        cr_assert_eq(mkdir(key_path, 0700), 0);

        cr_assert_eq(identity_load(state_dir, &loaded), -EPERM);
        cr_assert_eq(identity_load_or_create(state_dir, &loaded, NULL), -EPERM);
        cr_assert_null(loaded);
        cr_assert_eq(lstat(key_path, &st), 0);
        cr_assert(S_ISDIR(st.st_mode));
}

Test(identity, refuses_fifo_named_like_the_key_without_blocking, .timeout = 10) {
        _cleanup_(identity_freep) struct identity *loaded = NULL;

        cr_assert_eq(mkdir(state_dir, 0700), 0);
        cr_assert_eq(mkfifo(key_path, 0600), 0);

        cr_assert_eq(identity_load(state_dir, &loaded), -EPERM);
        cr_assert_eq(identity_load_or_create(state_dir, &loaded, NULL), -EPERM);
        cr_assert_null(loaded);
}

Test(identity, load_from_empty_dir_is_enoent) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        struct stat st;

        cr_assert_eq(mkdir(state_dir, 0700), 0);
        cr_assert_eq(identity_load(state_dir, &id), -ENOENT);
        cr_assert_null(id);
        cr_assert_eq(lstat(key_path, &st), -1, "identity_load() must not create a key");
}

Test(identity, load_from_missing_dir_is_enoent_and_creates_nothing) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        struct stat st;

        cr_assert_eq(identity_load(state_dir, &id), -ENOENT);
        cr_assert_null(id);
        cr_assert_eq(stat(state_dir, &st), -1);
}

Test(identity, free_accepts_null) {
        identity_free(NULL);
}

/* Node ids */

static bool is_node_id_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

Test(identity, node_id_is_52_lower_case_base32_characters) {
        for (int i = 0; i < 100; i++) {
                uint8_t pk[crypto_sign_PUBLICKEYBYTES];
                char id[NODE_ID_LEN + 1];

                randombytes_buf(pk, sizeof(pk));
                memset(id, 'X', sizeof(id));
                node_id_from_public_key(pk, id);
                cr_assert_eq(strlen(id), 52);
                for (size_t j = 0; j < NODE_ID_LEN; j++)
                        cr_assert(is_node_id_char(id[j]), "'%c' in %s", id[j], id);
        }
}

Test(identity, node_id_round_trips_random_keys) {
        for (int i = 0; i < 100; i++) {
                uint8_t pk[crypto_sign_PUBLICKEYBYTES], back[crypto_sign_PUBLICKEYBYTES];
                char id[NODE_ID_LEN + 1];

                randombytes_buf(pk, sizeof(pk));
                node_id_from_public_key(pk, id);
                cr_assert_eq(node_id_to_public_key(id, back), 0, "%s", id);
                cr_assert_eq(memcmp(pk, back, sizeof(pk)), 0, "%s", id);
        }
}

Test(identity, node_id_matches_rfc4648_base32) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        char id[NODE_ID_LEN + 1];

        memset(pk, 0, sizeof(pk));
        node_id_from_public_key(pk, id);
        cr_assert_str_eq(id, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

        memset(pk, 0xff, sizeof(pk));
        node_id_from_public_key(pk, id);
        cr_assert_str_eq(id, "777777777777777777777777777777777777777777777777777q");

        /* "foobar" is RFC 4648's test vector: MZXW6YTBOI====== */
        memset(pk, 0, sizeof(pk));
        memcpy(pk, "foobar", 6);
        node_id_from_public_key(pk, id);
        cr_assert_eq(strncmp(id, "mzxw6ytboi", 10), 0, "%s", id);
}

Test(identity, node_id_decode_rejects_wrong_length) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], orig[crypto_sign_PUBLICKEYBYTES];
        char id[NODE_ID_LEN + 2];

        randombytes_buf(orig, sizeof(orig));
        node_id_from_public_key(orig, id);

        cr_assert_eq(node_id_to_public_key("", pk), -EINVAL);
        cr_assert_eq(node_id_to_public_key(NULL, pk), -EINVAL);

        id[NODE_ID_LEN] = 'a';
        id[NODE_ID_LEN + 1] = '\0';
        cr_assert_eq(node_id_to_public_key(id, pk), -EINVAL, "53 characters");

        id[NODE_ID_LEN - 1] = '\0';
        cr_assert_eq(node_id_to_public_key(id, pk), -EINVAL, "51 characters");
}

Test(identity, node_id_decode_rejects_upper_case) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        char id[NODE_ID_LEN + 1];

        randombytes_buf(pk, sizeof(pk));
        node_id_from_public_key(pk, id);
        id[0] = 'A';
        cr_assert_eq(node_id_to_public_key(id, pk), -EINVAL);

        cr_assert_eq(node_id_to_public_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", pk), -EINVAL);
}

Test(identity, node_id_decode_rejects_characters_outside_alphabet) {
        static const char bad[] = "0189=-_ .+/\xc3";
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        char id[NODE_ID_LEN + 1];

        memset(pk, 0x5a, sizeof(pk));
        node_id_from_public_key(pk, id);
        cr_assert_eq(node_id_to_public_key(id, pk), 0);

        for (const char *c = bad; *c; c++) {
                char copy[NODE_ID_LEN + 1];

                memcpy(copy, id, sizeof(copy));
                copy[17] = *c;
                cr_assert_eq(node_id_to_public_key(copy, pk), -EINVAL, "'%c' accepted", *c);
        }
}

Test(identity, node_id_decode_rejects_nonzero_padding_bits) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], back[crypto_sign_PUBLICKEYBYTES];
        char id[NODE_ID_LEN + 1];

        /* The last character carries one key bit and four zero bits, so of
         * 'a'..'7' only 'a' (00000) and 'q' (10000) are valid there. */
        memset(pk, 0, sizeof(pk));
        node_id_from_public_key(pk, id);
        for (const char *c = "abcdefghijklmnopqrstuvwxyz234567"; *c; c++) {
                id[NODE_ID_LEN - 1] = *c;
                cr_assert_eq(node_id_to_public_key(id, back), *c == 'a' || *c == 'q' ? 0 : -EINVAL,
                             "last character '%c'", *c);
        }
}

Test(identity, node_id_decode_leaves_key_alone_on_error) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], before[crypto_sign_PUBLICKEYBYTES];

        memset(pk, 0xa5, sizeof(pk));
        memcpy(before, pk, sizeof(pk));
        cr_assert_eq(node_id_to_public_key("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", pk), -EINVAL);
        cr_assert_eq(memcmp(pk, before, sizeof(pk)), 0);
}
