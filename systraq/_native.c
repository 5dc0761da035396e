/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * systraq._native: the walk of a quick snapshot (systraq/scan.py), and
 * the reading of state files (systraq/statefile.py).
 *
 * A quick snapshot must lstat every file, since writing inside a file
 * does not touch its directory; what it may skip is reading the file.
 * The system calls for that are few and cheap: over bench/snapshot's
 * 76,974 paths of /usr and /etc (11,704 directories) a C walk with
 * openat, fstat, getdents64 and fstatat takes 0.18 s on one core.  Done
 * with os.scandir, the Python objects made for each entry and each
 * directory (DirEntry, stat_result, the packed record, the walk's stack)
 * cost more than those calls.  So the walk is done here, and what it
 * finds is handed back as one bytes string per batch of directories.
 *
 * Walker(parent_fd, name, path, prune)
 *
 *   Walks directory ``name`` of the directory open as ``parent_fd`` (a
 *   duplicate is kept; the caller still owns parent_fd), whose logical
 *   path is ``path``, and everything below it.  ``prune``: a sequence of
 *   logical paths (bytes) neither listed nor entered.
 *
 *   Each directory is opened relative to its parent with O_NOFOLLOW and
 *   O_DIRECTORY: a symbolic link swapped in for a directory is recorded,
 *   never entered.  Entries are looked at with fstatat and
 *   AT_SYMLINK_NOFOLLOW (a symbolic link is the link); no file is opened.
 *   An entry that getdents64 says is a directory is not looked at from
 *   its parent: opening it and fstat on the descriptor tell the same.
 *
 * Walker.step(directories) -> (found, unreadable, more)
 *
 *   Walks on for up to ``directories`` directories, fewer once ``found``
 *   holds a megabyte.  ``found`` holds one entry per path seen:
 *
 *       uint32 length of the path (little-endian), the path,
 *       one byte: 0, or 1 for a directory that could not be opened
 *       (EACCES, EPERM: "not readable"),
 *       the record's fixed part, packed from the lstat or fstat result
 *       as scan._FIXED ("<cHIIqqqQQ": kind, mode & 07777, uid, gid,
 *       size, mtime_ns, ctime_ns, dev, ino).
 *
 *   ``unreadable``: entries that could not be looked at (EACCES on
 *   fstatat: a directory that may be read but not searched); they are
 *   counted, not recorded.  A path gone before it was looked at is left
 *   out.  ``more`` is false when the walk is over.  Any other error
 *   raises OSError; the walker is then unusable.
 *
 * Walker.give() -> [path]
 *
 *   Takes the older half of the directories waiting to be walked (those
 *   nearest the top, with the most below them) out of this walk, for
 *   another worker to walk from their logical paths.
 *
 * Seen(previous)
 *
 *   In the parent: the previous run's records ({path: record}, which
 *   must not change while the Seen is used), and which of them were seen.
 *
 * Seen.compare(found) -> (changed, pending, unreadable)
 *
 *   The entries of ``found`` (a Walker.step result) against the previous
 *   records; each previous path among them is marked as seen.  A regular
 *   file whose fixed part starts its previous record, which has a digest
 *   or the note "not readable", is unchanged (whether a file may be
 *   hashed depends on its mode and owner only, which are the same); so
 *   is a symbolic link (same inode and ctime: the target cannot have
 *   changed).  Other regular files and links go to ``pending``, to be
 *   looked at (hashed, read) by the caller.  For anything else the record
 *   is the fixed part and two bytes (note, no digest); when it differs
 *   from the previous one, (path, record) goes to ``changed``.
 *   ``unreadable`` counts the directories that could not be opened and
 *   the unchanged files noted "not readable".
 *
 * Seen.mark(paths, seen)      marks previous paths as seen, or not.
 * Seen.unseen() -> [path]     the previous paths not seen, in dict order.
 *
 * records(data, start, end) -> {path: record}
 *
 *   The entries of a state file (statefile.load), from offset ``start``
 *   to ``end``: each "<HH" (the lengths of path and record), the path,
 *   the record.  ValueError when an entry is cut short.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXED_SIZE 51                       /* scan._FIXED.size */
#define DIGEST_LENGTH_AT (FIXED_SIZE + 1)   /* scan._DIGEST_LENGTH_AT */
#define NOT_READABLE 1                      /* scan._NOT_READABLE */
#define OPEN_WALK (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define STEP_BYTES (1 << 20)

static char
kind_of(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return 'f';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    default: return '?';
    }
}

static unsigned char *
put(unsigned char *at, uint64_t value, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        at[i] = (unsigned char)(value & 0xff);
        value >>= 8;
    }
    return at + bytes;
}

static void
pack(unsigned char *out, const struct stat *info)
{
    unsigned char *at = out;
    int64_t mtime = (int64_t)info->st_mtim.tv_sec * 1000000000 + info->st_mtim.tv_nsec;
    int64_t ctime = (int64_t)info->st_ctim.tv_sec * 1000000000 + info->st_ctim.tv_nsec;

    *at++ = (unsigned char)kind_of(info->st_mode);
    at = put(at, info->st_mode & 07777, 2);
    at = put(at, info->st_uid, 4);
    at = put(at, info->st_gid, 4);
    at = put(at, (uint64_t)(int64_t)info->st_size, 8);
    at = put(at, (uint64_t)mtime, 8);
    at = put(at, (uint64_t)ctime, 8);
    at = put(at, (uint64_t)info->st_dev, 8);
    put(at, (uint64_t)info->st_ino, 8);
}

/* --- a growing byte buffer ------------------------------------------- */

typedef struct {
    unsigned char *data;
    size_t length, size;
} Buffer;

static int
reserve(Buffer *buffer, size_t more)
{
    if (buffer->length + more <= buffer->size)
        return 0;
    size_t size = buffer->size ? buffer->size : 65536;
    while (size < buffer->length + more)
        size *= 2;
    unsigned char *data = realloc(buffer->data, size);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->size = size;
    return 0;
}

/* Append one entry of step()'s result. */
static int
emit(Buffer *buffer, const char *path, size_t length, int tag, const struct stat *info)
{
    if (length > UINT32_MAX) {
        PyErr_SetString(PyExc_OSError, "path too long");
        return -1;
    }
    if (reserve(buffer, 4 + length + 1 + FIXED_SIZE) < 0)
        return -1;
    unsigned char *at = put(buffer->data + buffer->length, length, 4);
    memcpy(at, path, length);
    at += length;
    *at++ = (unsigned char)tag;
    pack(at, info);
    buffer->length += 4 + length + 1 + FIXED_SIZE;
    return 0;
}

/* --- the walker -------------------------------------------------------- */

/* A directory kept open while entries of it wait on the stack. */
typedef struct {
    int fd;
    Py_ssize_t waiting;
} Held;

/* A directory to walk: entry ``name`` of held directory ``held``. */
typedef struct {
    Py_ssize_t held;
    size_t path_length;
    char *path;         /* path_length bytes, then a NUL */
    char *name;         /* inside path, NUL-terminated */
} Item;

typedef struct {
    PyObject_HEAD
    Held *held;
    Py_ssize_t held_count, held_size;   /* slots in use or free (fd -1) */
    Item *stack;
    Py_ssize_t stack_count, stack_size;
    char **prune;               /* sorted, NUL-terminated */
    Py_ssize_t prune_count;
    int broken;
} Walker;

static void
release(Walker *self, Py_ssize_t slot)
{
    Held *held = &self->held[slot];
    if (--held->waiting > 0)
        return;
    close(held->fd);
    held->fd = -1;
}

static Py_ssize_t
hold(Walker *self, int fd, Py_ssize_t waiting)
{
    /* The directories held at once are those with entries still waiting:
     * about one a level of the tree, so a free slot is looked for from
     * the start. */
    Py_ssize_t slot = 0;
    while (slot < self->held_count && self->held[slot].fd != -1)
        slot++;
    if (slot == self->held_count) {
        if (self->held_count == self->held_size) {
            Py_ssize_t size = self->held_size ? self->held_size * 2 : 64;
            Held *held = realloc(self->held, size * sizeof *held);
            if (held == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->held = held;
            self->held_size = size;
        }
        self->held_count++;
    }
    self->held[slot].fd = fd;
    self->held[slot].waiting = waiting;
    return slot;
}

static int
push(Walker *self, Py_ssize_t held, const char *path, size_t path_length, size_t name_at)
{
    if (self->stack_count == self->stack_size) {
        Py_ssize_t size = self->stack_size ? self->stack_size * 2 : 256;
        Item *stack = realloc(self->stack, size * sizeof *stack);
        if (stack == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->stack = stack;
        self->stack_size = size;
    }
    char *copy = malloc(path_length + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, path, path_length);
    copy[path_length] = '\0';
    Item *item = &self->stack[self->stack_count++];
    item->held = held;
    item->path_length = path_length;
    item->path = copy;
    item->name = copy + name_at;
    return 0;
}

static int
compare_prune(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
pruned(Walker *self, const char *path)
{
    if (self->prune_count == 0)
        return 0;
    return bsearch(&path, self->prune, self->prune_count, sizeof *self->prune,
                   compare_prune) != NULL;
}

static void
clear(Walker *self)
{
    for (Py_ssize_t i = 0; i < self->stack_count; i++)
        free(self->stack[i].path);
    self->stack_count = 0;
    for (Py_ssize_t i = 0; i < self->held_count; i++)
        if (self->held[i].fd >= 0) {
            close(self->held[i].fd);
            self->held[i].fd = -1;
        }
    self->held_count = 0;
}

static void
Walker_dealloc(Walker *self)
{
    clear(self);
    free(self->held);
    free(self->stack);
    for (Py_ssize_t i = 0; i < self->prune_count; i++)
        free(self->prune[i]);
    free(self->prune);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Walker_init(Walker *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"parent_fd", "name", "path", "prune", NULL};
    int parent_fd;
    Py_buffer name, path;
    PyObject *prune;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*y*O:Walker", keywords,
                                     &parent_fd, &name, &path, &prune))
        return -1;
    int result = -1;
    PyObject *sequence = NULL;
    if (self->stack != NULL || self->prune != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Walker is set up once");
        goto done;
    }
    if (memchr(name.buf, '\0', name.len) || memchr(path.buf, '\0', path.len)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        goto done;
    }
    sequence = PySequence_Fast(prune, "prune must be a sequence");
    if (sequence == NULL)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    self->prune = calloc(count ? count : 1, sizeof *self->prune);
    if (self->prune == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
        char *data;
        Py_ssize_t length;
        if (PyBytes_AsStringAndSize(item, &data, &length) < 0)
            goto done;
        if ((Py_ssize_t)strlen(data) != length)
            continue;       /* holds a NUL: no path is that */
        self->prune[self->prune_count] = strdup(data);
        if (self->prune[self->prune_count] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        self->prune_count++;
    }
    qsort(self->prune, self->prune_count, sizeof *self->prune, compare_prune);

    /* The walk starts at an item "name" of a held copy of parent_fd. */
    Buffer start = {0};
    if (reserve(&start, (size_t)path.len + 1 + (size_t)name.len + 1) < 0)
        goto done;
    memcpy(start.data, path.buf, path.len);
    start.data[path.len] = '\0';
    memcpy(start.data + path.len + 1, name.buf, name.len);
    start.data[path.len + 1 + name.len] = '\0';
    int fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        free(start.data);
        goto done;
    }
    Py_ssize_t slot = hold(self, fd, 1);
    /* The item's path is path; its name a second string after it. */
    if (slot < 0 || push(self, slot, (char *)start.data, (size_t)path.len + 1 + name.len,
                         (size_t)path.len + 1) < 0) {
        if (slot < 0)
            close(fd);
        free(start.data);
        goto done;
    }
    free(start.data);
    self->stack[0].path_length = (size_t)path.len;
    result = 0;
done:
    Py_XDECREF(sequence);
    PyBuffer_Release(&name);
    PyBuffer_Release(&path);
    return result;
}

static PyObject *
path_error(int error, const char *path, size_t length)
{
    PyObject *filename = PyBytes_FromStringAndSize(path, (Py_ssize_t)length);
    errno = error;
    if (filename != NULL) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
        Py_DECREF(filename);
    }
    return NULL;
}

/* The child's logical path, in *scratch: parent path, "/", name. */
static int
child_path(Buffer *scratch, const char *parent, size_t parent_length, const char *name,
           size_t name_length, size_t *length)
{
    int slash = !(parent_length == 1 && parent[0] == '/');
    scratch->length = 0;
    if (reserve(scratch, parent_length + 1 + name_length + 1) < 0)
        return -1;
    memcpy(scratch->data, parent, parent_length);
    if (slash)
        scratch->data[parent_length] = '/';
    memcpy(scratch->data + parent_length + slash, name, name_length);
    *length = parent_length + slash + name_length;
    scratch->data[*length] = '\0';
    return 0;
}

/* Walk one directory: the item just popped. */
static int
walk_one(Walker *self, Item *item, Buffer *found, Buffer *scratch, long *unreadable)
{
    int parent = self->held[item->held].fd;
    struct stat info;
    int fd = openat(parent, item->name, OPEN_WALK);
    if (fd < 0) {
        int error = errno;
        int closed = error == EACCES || error == EPERM;
        if (!closed && error != ENOENT && error != ENOTDIR && error != ELOOP) {
            path_error(error, item->path, item->path_length);
            return -1;
        }
        /* Replaced meanwhile, or closed to us: record what is there. */
        if (fstatat(parent, item->name, &info, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                return 0;
            if (errno == EACCES || errno == EPERM) {
                (*unreadable)++;
                return 0;
            }
            path_error(errno, item->path, item->path_length);
            return -1;
        }
        return emit(found, item->path, item->path_length,
                    closed && S_ISDIR(info.st_mode) ? NOT_READABLE : 0, &info);
    }
    if (fstat(fd, &info) != 0 || emit(found, item->path, item->path_length, 0, &info) < 0) {
        if (!PyErr_Occurred())
            path_error(errno, item->path, item->path_length);
        close(fd);
        return -1;
    }
    Py_ssize_t first = self->stack_count;
    /* getdents64 on our own descriptor, not opendir: a directory of /usr
     * holds 6.6 entries on average, and opendir's copy and buffer cost
     * as much as their lstat. */
    char buffer[32768] __attribute__((aligned(8)));
    for (;;) {
        ssize_t got = getdents64(fd, buffer, sizeof buffer);
        if (got < 0) {
            path_error(errno, item->path, item->path_length);
            goto fail;
        }
        if (got == 0)
            break;
        for (ssize_t at = 0; at < got;) {
            struct dirent64 *entry = (struct dirent64 *)(buffer + at);
            at += entry->d_reclen;
            const char *name = entry->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
                continue;
            size_t name_length = strlen(name), length;
            if (child_path(scratch, item->path, item->path_length, name, name_length,
                           &length) < 0)
                goto fail;
            const char *path = (const char *)scratch->data;
            if (pruned(self, path))
                continue;
            int directory = entry->d_type == DT_DIR;
            if (!directory) {
                if (fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (errno == ENOENT)        /* gone meanwhile */
                        continue;
                    if (errno == EACCES || errno == EPERM) {
                        (*unreadable)++;        /* readable, not searchable */
                        continue;
                    }
                    path_error(errno, path, length);
                    goto fail;
                }
                directory = S_ISDIR(info.st_mode);
            }
            if (directory) {
                /* Its record comes from fstat once it is opened. */
                if (push(self, -1, path, length, length - name_length) < 0)
                    goto fail;
            } else if (emit(found, path, length, 0, &info) < 0) {
                goto fail;
            }
        }
    }
    Py_ssize_t children = self->stack_count - first;
    if (children == 0) {
        close(fd);
        return 0;
    }
    Py_ssize_t slot = hold(self, fd, children);
    if (slot < 0)
        goto fail;
    /* Taken in the order listed: the stack is popped from its end. */
    for (Py_ssize_t i = first, j = self->stack_count - 1; i < j; i++, j--) {
        Item swap = self->stack[i];
        self->stack[i] = self->stack[j];
        self->stack[j] = swap;
    }
    for (Py_ssize_t i = first; i < self->stack_count; i++)
        self->stack[i].held = slot;
    return 0;
fail:
    while (self->stack_count > first)
        free(self->stack[--self->stack_count].path);
    close(fd);
    return -1;
}

static PyObject *
Walker_step(Walker *self, PyObject *args)
{
    Py_ssize_t directories;
    if (!PyArg_ParseTuple(args, "n:step", &directories))
        return NULL;
    if (self->broken) {
        PyErr_SetString(PyExc_RuntimeError, "the walk failed");
        return NULL;
    }
    Buffer found = {0}, scratch = {0};
    long unreadable = 0;
    /* A batch ends after ``directories`` directories, or once it holds
     * STEP_BYTES: a directory of a million files makes one batch. */
    for (Py_ssize_t done = 0; done < directories && self->stack_count > 0
         && found.length < STEP_BYTES; done++) {
        Item item = self->stack[--self->stack_count];
        int failed = walk_one(self, &item, &found, &scratch, &unreadable) < 0;
        release(self, item.held);
        free(item.path);
        if (failed) {
            self->broken = 1;
            clear(self);
            free(found.data);
            free(scratch.data);
            return NULL;
        }
    }
    free(scratch.data);
    PyObject *result = Py_BuildValue("(y#lO)", found.data ? (char *)found.data : "",
                                     (Py_ssize_t)found.length, unreadable,
                                     self->stack_count > 0 ? Py_True : Py_False);
    free(found.data);
    return result;
}

static PyObject *
Walker_give(Walker *self, PyObject *unused)
{
    Py_ssize_t half = self->stack_count / 2;
    PyObject *paths = PyList_New(half);
    if (paths == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < half; i++) {
        PyObject *path = PyBytes_FromStringAndSize(self->stack[i].path,
                                                   (Py_ssize_t)self->stack[i].path_length);
        if (path == NULL) {
            Py_DECREF(paths);
            return NULL;
        }
        PyList_SET_ITEM(paths, i, path);
    }
    for (Py_ssize_t i = 0; i < half; i++) {
        release(self, self->stack[i].held);
        free(self->stack[i].path);
    }
    memmove(self->stack, self->stack + half, (self->stack_count - half) * sizeof *self->stack);
    self->stack_count -= half;
    return paths;
}

static PyMethodDef Walker_methods[] = {
    {"step", (PyCFunction)Walker_step, METH_VARARGS,
     "step(directories) -> (found, unreadable, more): walk on (see the source)."},
    {"give", (PyCFunction)Walker_give, METH_NOARGS,
     "give() -> [path]: the older half of the directories waiting, taken out."},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "systraq._native.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walker(parent_fd, name, path, prune): a quick snapshot's walk of one "
              "directory tree (see the source).",
    .tp_methods = Walker_methods,
    .tp_init = (initproc)Walker_init,
    .tp_new = PyType_GenericNew,
};

/* --- the comparison, in the parent ------------------------------------- */

static uint32_t
get32(const unsigned char *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16
        | (uint32_t)at[3] << 24;
}

/* A table of the previous records: their paths' hashes (Python's own,
 * cached in the dict's keys) to their positions in the dict's order, and
 * one byte per position telling whether the path was seen.  It takes
 * 8 bytes a slot at two slots a path, and 17 bytes a path besides; the
 * {path: position} dict it replaces cost 10 ms to build at 76,974 paths,
 * and a second dict lookup for every path compared. */
typedef struct {
    uint32_t position;      /* + 1; 0: empty */
    uint32_t hash;          /* the low bits of the path's hash */
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject *previous;     /* the dict: it keeps the keys and values alive */
    PyObject **keys, **values;   /* borrowed, by position */
    char *seen;
    Slot *slots;
    size_t mask;
    Py_ssize_t count;
} Seen;

static void
Seen_dealloc(Seen *self)
{
    Py_XDECREF(self->previous);
    free(self->keys);
    free(self->values);
    free(self->seen);
    free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Seen_init(Seen *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"previous", NULL};
    PyObject *previous;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!:Seen", keywords, &PyDict_Type, &previous))
        return -1;
    if (self->previous != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Seen is set up once");
        return -1;
    }
    Py_ssize_t count = PyDict_GET_SIZE(previous);
    if (count >= UINT32_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "too many paths");
        return -1;
    }
    size_t size = 16;
    while (size < 2 * (size_t)count)
        size *= 2;
    self->keys = malloc((count ? count : 1) * sizeof *self->keys);
    self->values = malloc((count ? count : 1) * sizeof *self->values);
    self->seen = calloc(count ? count : 1, 1);
    self->slots = calloc(size, sizeof *self->slots);
    if (!self->keys || !self->values || !self->seen || !self->slots) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = size - 1;
    Py_ssize_t at = 0, position = 0;
    PyObject *key, *value;
    while (PyDict_Next(previous, &at, &key, &value)) {
        if (!PyBytes_Check(key) || !PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "previous records must be bytes: bytes");
            return -1;
        }
        Py_hash_t hash = PyObject_Hash(key);
        if (hash == -1)
            return -1;
        size_t i = (size_t)hash & self->mask;
        while (self->slots[i].position)
            i = (i + 1) & self->mask;
        self->slots[i].position = (uint32_t)position + 1;
        self->slots[i].hash = (uint32_t)hash;
        self->keys[position] = key;
        self->values[position] = value;
        position++;
    }
    self->count = position;
    Py_INCREF(previous);
    self->previous = previous;
    return 0;
}

/* The position of path (a bytes object), or -1; -2 on error. */
static Py_ssize_t
find(Seen *self, PyObject *path)
{
    Py_hash_t hash = PyObject_Hash(path);
    if (hash == -1)
        return -2;
    Py_ssize_t length = PyBytes_GET_SIZE(path);
    for (size_t i = (size_t)hash & self->mask; self->slots[i].position; i = (i + 1) & self->mask) {
        if (self->slots[i].hash != (uint32_t)hash)
            continue;
        Py_ssize_t position = (Py_ssize_t)self->slots[i].position - 1;
        PyObject *key = self->keys[position];
        if (PyBytes_GET_SIZE(key) == length
            && memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(path), length) == 0)
            return position;
    }
    return -1;
}

static PyObject *
Seen_compare(Seen *self, PyObject *args)
{
    Py_buffer found;
    if (self->previous == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Seen not set up");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*:compare", &found))
        return NULL;
    PyObject *changed = PyList_New(0);
    PyObject *pending = PyList_New(0);
    PyObject *path = NULL, *record = NULL;
    long unreadable = 0;
    if (changed == NULL || pending == NULL)
        goto fail;
    const unsigned char *data = found.buf;
    Py_ssize_t at = 0;
    while (at < found.len) {
        if (found.len - at < 4)
            goto damaged;
        uint32_t length = get32(data + at);
        if ((Py_ssize_t)length > found.len - at - 4 - 1 - FIXED_SIZE)
            goto damaged;
        path = PyBytes_FromStringAndSize((const char *)data + at + 4, length);
        if (path == NULL)
            goto fail;
        int tag = data[at + 4 + length];
        const unsigned char *fixed = data + at + 4 + length + 1;
        at += 4 + length + 1 + FIXED_SIZE;

        Py_ssize_t position = find(self, path);
        if (position == -2)
            goto fail;
        PyObject *old = NULL;
        if (position >= 0) {
            self->seen[position] = 1;
            old = self->values[position];
        }
        if ((fixed[0] == 'f' || fixed[0] == 'l') && tag == 0) {
            const char *before = old ? PyBytes_AS_STRING(old) : NULL;
            if (old == NULL || PyBytes_GET_SIZE(old) <= DIGEST_LENGTH_AT
                || memcmp(before, fixed, FIXED_SIZE) != 0
                || (fixed[0] == 'f' && before[DIGEST_LENGTH_AT] == 0
                    && before[FIXED_SIZE] != NOT_READABLE)) {
                if (PyList_Append(pending, path) < 0)
                    goto fail;
            } else if (before[FIXED_SIZE] == NOT_READABLE) {
                unreadable++;
            }
            Py_CLEAR(path);
            continue;
        }
        if (tag == NOT_READABLE)
            unreadable++;
        if (old != NULL && PyBytes_GET_SIZE(old) == FIXED_SIZE + 2
            && memcmp(PyBytes_AS_STRING(old), fixed, FIXED_SIZE) == 0
            && PyBytes_AS_STRING(old)[FIXED_SIZE] == tag
            && PyBytes_AS_STRING(old)[FIXED_SIZE + 1] == 0) {
            Py_CLEAR(path);
            continue;
        }
        record = PyBytes_FromStringAndSize(NULL, FIXED_SIZE + 2);
        if (record == NULL)
            goto fail;
        memcpy(PyBytes_AS_STRING(record), fixed, FIXED_SIZE);
        PyBytes_AS_STRING(record)[FIXED_SIZE] = (char)tag;
        PyBytes_AS_STRING(record)[FIXED_SIZE + 1] = 0;
        PyObject *pair = PyTuple_Pack(2, path, record);
        Py_CLEAR(path);
        Py_CLEAR(record);
        if (pair == NULL)
            goto fail;
        int appended = PyList_Append(changed, pair);
        Py_DECREF(pair);
        if (appended < 0)
            goto fail;
    }
    PyBuffer_Release(&found);
    return Py_BuildValue("(NNl)", changed, pending, unreadable);

damaged:
    PyErr_SetString(PyExc_ValueError, "a walk's result is cut short");
fail:
    Py_XDECREF(path);
    Py_XDECREF(record);
    Py_XDECREF(changed);
    Py_XDECREF(pending);
    PyBuffer_Release(&found);
    return NULL;
}

static PyObject *
Seen_mark(Seen *self, PyObject *args)
{
    PyObject *paths;
    int value;
    if (self->previous == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Seen not set up");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Op:mark", &paths, &value))
        return NULL;
    PyObject *iterator = PyObject_GetIter(paths);
    if (iterator == NULL)
        return NULL;
    PyObject *path;
    while ((path = PyIter_Next(iterator)) != NULL) {
        Py_ssize_t position = PyBytes_Check(path) ? find(self, path) : -3;
        Py_DECREF(path);
        if (position == -3)
            PyErr_SetString(PyExc_TypeError, "paths must be bytes");
        if (position < -1) {
            Py_DECREF(iterator);
            return NULL;
        }
        if (position >= 0)
            self->seen[position] = (char)value;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Seen_unseen(Seen *self, PyObject *unused)
{
    PyObject *paths = PyList_New(0);
    if (paths == NULL)
        return NULL;
    const char *start = self->seen, *at = start, *end = start + self->count;
    while (at < end && (at = memchr(at, 0, end - at)) != NULL) {
        if (PyList_Append(paths, self->keys[at - start]) < 0) {
            Py_DECREF(paths);
            return NULL;
        }
        at++;
    }
    return paths;
}

static PyMethodDef Seen_methods[] = {
    {"compare", (PyCFunction)Seen_compare, METH_VARARGS,
     "compare(found) -> (changed, pending, unreadable): a quick walk's findings "
     "against the previous records (see the source)."},
    {"mark", (PyCFunction)Seen_mark, METH_VARARGS,
     "mark(paths, seen): mark the previous records of paths as seen or not."},
    {"unseen", (PyCFunction)Seen_unseen, METH_NOARGS,
     "unseen() -> [path]: the previous paths not seen, in the dict's order."},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject SeenType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "systraq._native.Seen",
    .tp_basicsize = sizeof(Seen),
    .tp_dealloc = (destructor)Seen_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Seen(previous): the previous records of a quick snapshot, and which of "
              "them were seen (see the source).",
    .tp_methods = Seen_methods,
    .tp_init = (initproc)Seen_init,
    .tp_new = PyType_GenericNew,
};

/* --- reading a state file ---------------------------------------------- */

/* records(data, start, end) -> {path: record}: see statefile.load. */
static PyObject *
records(PyObject *module, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn:records", &data, &start, &end))
        return NULL;
    PyObject *result = PyDict_New();
    if (result == NULL)
        goto fail;
    if (start < 0 || end > data.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "entries outside the data");
        goto fail;
    }
    const unsigned char *at = (const unsigned char *)data.buf + start;
    const unsigned char *stop = (const unsigned char *)data.buf + end;
    while (at < stop) {
        if (stop - at < 4) {
            PyErr_SetString(PyExc_ValueError, "entry cut short");
            goto fail;
        }
        Py_ssize_t path_length = at[0] | at[1] << 8;
        Py_ssize_t record_length = at[2] | at[3] << 8;
        at += 4;
        if (stop - at < path_length + record_length) {
            PyErr_SetString(PyExc_ValueError, "entry cut short");
            goto fail;
        }
        PyObject *path = PyBytes_FromStringAndSize((const char *)at, path_length);
        PyObject *record = path ? PyBytes_FromStringAndSize((const char *)at + path_length,
                                                            record_length) : NULL;
        int failed = record == NULL || PyDict_SetItem(result, path, record) < 0;
        Py_XDECREF(path);
        Py_XDECREF(record);
        if (failed)
            goto fail;
        at += path_length + record_length;
    }
    PyBuffer_Release(&data);
    return result;
fail:
    Py_XDECREF(result);
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"records", records, METH_VARARGS,
     "records(data, start, end) -> {path: record}: a state file's entries."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "systraq._native",
    "The part of systraq in C: the walk of a quick snapshot, the reading of state files.",
    -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&WalkerType) < 0 || PyType_Ready(&SeenType) < 0)
        return NULL;
    PyObject *self = PyModule_Create(&module);
    if (self == NULL)
        return NULL;
    if (PyModule_AddObjectRef(self, "Walker", (PyObject *)&WalkerType) < 0
        || PyModule_AddObjectRef(self, "Seen", (PyObject *)&SeenType) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}
