/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "identity.h"
#include "log.h"
#include "macro.h"

/* DIR/identity.key, 72 bytes:
 *
 *   0   7  "SWARMID" (no NUL)
 *   7   1  format version, IDENTITY_VERSION
 *   8  32  Ed25519 seed
 *  40  32  Ed25519 public key, derived from the seed
 *
 * The public key is redundant on purpose: re-deriving it from the seed and
 * comparing catches a file damaged in the seed or the key, which would
 * otherwise silently give this node a different id. */
#define IDENTITY_MAGIC "SWARMID"
#define IDENTITY_MAGIC_LEN (sizeof(IDENTITY_MAGIC) - 1)
#define IDENTITY_VERSION 0x01
#define IDENTITY_SEED_OFFSET (IDENTITY_MAGIC_LEN + 1)
#define IDENTITY_PK_OFFSET (IDENTITY_SEED_OFFSET + crypto_sign_SEEDBYTES)
#define IDENTITY_FILE_SIZE (IDENTITY_PK_OFFSET + crypto_sign_PUBLICKEYBYTES)

_Static_assert(IDENTITY_FILE_SIZE == 72, "identity file layout changed");

/* For sodium_malloc()ed buffers; sodium_free() wipes them before unmapping. */
static void sodium_freep(void *p) {
        sodium_free(*(void **) p);
}
#define _cleanup_sodium_free_ _cleanup_(sodium_freep)

/* Removes the temporary file of the mkostemp() fallback, whatever happens. */
static void unlink_and_freep(char **p) {
        if (*p) {
                int saved = errno;
                (void) unlink(*p);
                errno = saved;
                free(*p);
        }
}
#define _cleanup_unlink_free_ _cleanup_(unlink_and_freep)

static int identity_sodium_init(void) {
        if (sodium_init() < 0)
                return log_error_errno(EIO, "Failed to initialize libsodium; cannot handle the node identity.");
        return 0;
}

void identity_free(struct identity *id) {
        if (!id)
                return;
        sodium_memzero(id, sizeof(*id));
        sodium_free(id);
}

static const char *file_type_to_string(mode_t mode) {
        if (S_ISDIR(mode))
                return "a directory";
        if (S_ISFIFO(mode))
                return "a FIFO";
        if (S_ISSOCK(mode))
                return "a socket";
        if (S_ISCHR(mode) || S_ISBLK(mode))
                return "a device node";
        if (S_ISLNK(mode))
                return "a symbolic link";
        return "not a regular file";
}

static int identity_open(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* O_NONBLOCK so that a FIFO in its place cannot hang us before fstat()
         * rejects it; it does nothing to regular files. */
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
                int r = negative_errno();

                if (r == -ENOENT)
                        return r;       /* not a refusal: the caller decides */
                if (r == -ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                        return log_error_errno(EPERM,
                                               "%s is a symbolic link; refusing to follow it to the node's secret key. "
                                               "Put the key file itself there, or remove the link to create a new identity.",
                                               path);
                if (r == -EACCES)
                        return log_error_errno(EPERM,
                                               "Cannot open %s: permission denied. The state directory and the key must "
                                               "belong to the user swarmd runs as (uid %u); fix their ownership, or use "
                                               "another state directory.",
                                               path, (unsigned) geteuid());
                return log_error_errno(r, "Failed to open %s: %m", path);
        }

        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat %s: %m", path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(EPERM,
                                       "%s is %s, not a regular file; refusing to use it as the node identity. "
                                       "Remove it to create a new identity.",
                                       path, file_type_to_string(st.st_mode));
        /* Root may use the service's key (swarmd --show-identity as root on
         * a packaged install, where the key belongs to the swarmd user):
         * nothing another user controls is beyond root anyway. */
        if (st.st_uid != geteuid() && geteuid() != 0)
                return log_error_errno(EPERM,
                                       "%s is owned by uid %u, not by uid %u that swarmd runs as; refusing a key "
                                       "another user controls. If it is this node's key, run swarmd as uid %u "
                                       "(or as root); else remove it to create a new identity.",
                                       path, (unsigned) st.st_uid, (unsigned) geteuid(), (unsigned) st.st_uid);
        if (st.st_mode & 044)
                return log_error_errno(EPERM,
                                       "%s is readable by group or others (mode %04o); refusing to use a leaked key. "
                                       "Remove it to create a new identity, or chmod 600 if it never left this machine.",
                                       path, (unsigned) (st.st_mode & 07777));
        if (st.st_mode & 077)
                return log_error_errno(EPERM,
                                       "%s is writable or executable by group or others (mode %04o); refusing a key "
                                       "others could have replaced. Remove it to create a new identity, or chmod 600 "
                                       "if only this node's swarmd ever wrote it.",
                                       path, (unsigned) (st.st_mode & 07777));
        if (st.st_size != (off_t) IDENTITY_FILE_SIZE)
                return log_error_errno(EBADMSG,
                                       "%s has %jd bytes, not the %zu of an identity file; it is damaged or not an "
                                       "identity file. Restore it from a backup, or move it away to create a new "
                                       "identity (this node then gets a new id).",
                                       path, (intmax_t) st.st_size, (size_t) IDENTITY_FILE_SIZE);

        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Checks the file's contents and derives the key pair from its seed. */
static int identity_parse(const char *path, const uint8_t *buf, struct identity *id) {
        if (memcmp(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN) != 0)
                return log_error_errno(EBADMSG,
                                       "%s is not a swarmd identity file (it does not start with \"%s\"). "
                                       "Restore it from a backup, or move it away to create a new identity.",
                                       path, IDENTITY_MAGIC);
        if (buf[IDENTITY_MAGIC_LEN] != IDENTITY_VERSION)
                return log_error_errno(EBADMSG,
                                       "%s has identity format version %u, but this swarmd reads only version %u. "
                                       "Use the swarmd that wrote it, or move it away to create a new identity.",
                                       path, (unsigned) buf[IDENTITY_MAGIC_LEN], (unsigned) IDENTITY_VERSION);

        if (crypto_sign_seed_keypair(id->public_key, id->secret_key, buf + IDENTITY_SEED_OFFSET) < 0)
                return log_error_errno(EIO, "Failed to derive the key pair from %s.", path);
        if (memcmp(id->public_key, buf + IDENTITY_PK_OFFSET, crypto_sign_PUBLICKEYBYTES) != 0)
                return log_error_errno(EBADMSG,
                                       "%s is damaged: its public key does not match its secret key. Restore it "
                                       "from a backup, or move it away to create a new identity (this node then "
                                       "gets a new id).",
                                       path);

        node_id_from_public_key(id->public_key, id->node_id);
        return 0;
}

static int identity_path(const char *dir, char **ret) {
        char *p;

        if (asprintf(&p, "%s/%s", dir, IDENTITY_FILE) < 0)
                return log_error_errno(ENOMEM, "Out of memory.");
        *ret = p;
        return 0;
}

int identity_load(const char *dir, struct identity **ret) {
        _cleanup_sodium_free_ uint8_t *buf = NULL;
        _cleanup_(identity_freep) struct identity *id = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        ssize_t n;
        int r;

        assert(dir);
        assert(ret);

        r = identity_sodium_init();
        if (r < 0)
                return r;
        r = identity_path(dir, &path);
        if (r < 0)
                return r;

        r = identity_open(path, &fd);
        if (r < 0)
                return r;

        /* One byte more than expected, to notice a file that grew since fstat(). */
        buf = sodium_malloc(IDENTITY_FILE_SIZE + 1);
        id = sodium_malloc(sizeof(*id));
        if (!buf || !id)
                return log_error_errno(ENOMEM, "Out of memory.");

        n = loop_read(fd, buf, IDENTITY_FILE_SIZE + 1);
        if (n < 0)
                return log_error_errno((int) n, "Failed to read %s: %m", path);
        if (n != (ssize_t) IDENTITY_FILE_SIZE)
                return log_error_errno(EBADMSG,
                                       "%s changed size while being read; is something else writing it? "
                                       "Stop it, then restart swarmd.",
                                       path);

        r = identity_parse(path, buf, id);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(id);
        return 0;
}

/* Creates DIR itself, but not its parents: a missing parent more likely
 * means a mistyped path than a directory we should conjure up. */
static int state_dir_open(const char *dir, int *ret_fd) {
        int fd;

        if (mkdir(dir, 0700) < 0) {
                if (errno == ENOENT)
                        return log_error_errno(ENOENT,
                                               "Cannot create the state directory %s: its parent directory does not "
                                               "exist. Create the parent, or point node.state_directory elsewhere.",
                                               dir);
                if (errno != EEXIST)
                        return log_error_errno(errno, "Failed to create the state directory %s: %m", dir);
        }

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open the state directory %s: %m", dir);

        *ret_fd = fd;
        return 0;
}

static int fd_write_secret(int fd, const uint8_t *buf, size_t size) {
        int r;

        /* Whatever the umask did, the key is for us alone. */
        if (fchmod(fd, 0600) < 0)
                return negative_errno();
        r = loop_write(fd, buf, size);
        if (r < 0)
                return r;
        if (fsync(fd) < 0)
                return negative_errno();
        return 0;
}

/* Writes buf to an unnamed file in DIR and links it in as name, which fails
 * with -EEXIST rather than replacing anything. Returns -EOPNOTSUPP, without
 * logging, when the file system or /proc cannot do this, so that the caller
 * falls back to a named temporary file. */
static int write_via_tmpfile(int dfd, const char *path, const uint8_t *buf, size_t size) {
        _cleanup_close_ int fd = -1;
        char proc_path[64];
        int r;

        fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = negative_errno();
                if (r == -EOPNOTSUPP || r == -EISDIR || r == -EINVAL)
                        return -EOPNOTSUPP;
                return log_error_errno(r, "Failed to create a temporary file for %s: %m", path);
        }

        r = fd_write_secret(fd, buf, size);
        if (r < 0)
                return log_error_errno(r, "Failed to write a temporary file for %s: %m", path);

        /* linkat(fd, "", …, AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH;
         * the /proc path of our own descriptor does not. */
        snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc_path, dfd, IDENTITY_FILE, AT_SYMLINK_FOLLOW) < 0) {
                r = negative_errno();
                if (r == -EEXIST)
                        return r;
                if (r == -ENOENT)
                        return -EOPNOTSUPP;     /* no /proc */
                return log_error_errno(r, "Failed to link %s into place: %m", path);
        }
        return 0;
}

static int write_via_mkostemp(int dfd, const char *dir, const char *path, const uint8_t *buf, size_t size) {
        _cleanup_unlink_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&tmp, "%s/.#%sXXXXXX", dir, IDENTITY_FILE) < 0)
                return log_error_errno(ENOMEM, "Out of memory.");

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                free(TAKE_PTR(tmp));    /* nothing to unlink */
                return log_error_errno(r, "Failed to create a temporary file for %s: %m", path);
        }

        r = fd_write_secret(fd, buf, size);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", tmp);

        if (linkat(AT_FDCWD, tmp, dfd, IDENTITY_FILE, 0) < 0) {
                r = negative_errno();
                if (r == -EEXIST)
                        return r;
                return log_error_errno(r, "Failed to link %s into place as %s: %m", tmp, path);
        }
        return 0;       /* the cleanup removes the temporary name */
}

/* Makes a new key pair and stores it as DIR/identity.key. Returns -EEXIST,
 * unlogged, when someone else created the file first. */
static int identity_create(const char *dir, struct identity **ret) {
        _cleanup_sodium_free_ uint8_t *buf = NULL;
        _cleanup_(identity_freep) struct identity *id = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int dfd = -1;
        int r;

        r = identity_path(dir, &path);
        if (r < 0)
                return r;
        r = state_dir_open(dir, &dfd);
        if (r < 0)
                return r;

        buf = sodium_malloc(IDENTITY_FILE_SIZE);
        id = sodium_malloc(sizeof(*id));
        if (!buf || !id)
                return log_error_errno(ENOMEM, "Out of memory.");

        memcpy(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
        buf[IDENTITY_MAGIC_LEN] = IDENTITY_VERSION;
        randombytes_buf(buf + IDENTITY_SEED_OFFSET, crypto_sign_SEEDBYTES);
        if (crypto_sign_seed_keypair(id->public_key, id->secret_key, buf + IDENTITY_SEED_OFFSET) < 0)
                return log_error_errno(EIO, "Failed to generate a key pair for %s.", path);
        memcpy(buf + IDENTITY_PK_OFFSET, id->public_key, crypto_sign_PUBLICKEYBYTES);
        node_id_from_public_key(id->public_key, id->node_id);

        r = write_via_tmpfile(dfd, path, buf, IDENTITY_FILE_SIZE);
        if (r == -EOPNOTSUPP)
                r = write_via_mkostemp(dfd, dir, path, buf, IDENTITY_FILE_SIZE);
        if (r < 0)
                return r;

        /* Without this the new name might not survive a crash, and the next
         * start would create a different identity. */
        if (fsync(dfd) < 0)
                return log_error_errno(errno, "Failed to sync the state directory %s after creating %s: %m",
                                       dir, path);

        *ret = TAKE_PTR(id);
        return 0;
}

int identity_load_or_create(const char *dir, struct identity **ret, bool *created) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        bool made = false;
        int r;

        assert(dir);
        assert(ret);

        r = identity_load(dir, &id);
        if (r == -ENOENT) {
                r = identity_create(dir, &id);
                if (r >= 0)
                        made = true;
                else if (r == -EEXIST) {
                        /* Another swarmd on this directory won the race; its
                         * file is complete, since it was linked in after fsync(). */
                        r = identity_load(dir, &id);
                        if (r == -ENOENT)
                                return log_error_errno(r, "%s/%s disappeared while being created; is something "
                                                       "else cleaning %s? Stop it, then restart swarmd.",
                                                       dir, IDENTITY_FILE, dir);
                }
        }
        if (r < 0)
                return r;

        if (created)
                *created = made;
        *ret = TAKE_PTR(id);
        return 0;
}
