/* The module as a C application uses it across fork, exec, dlclose and
 * C_Finalize: tests/fork.rs compiles this with cc into a temporary directory and
 * runs one mode per process:
 *
 *     fork  MODULE fork-sign      fork after C_Login; both sign, the child after
 *                                 its own C_Initialize and C_Login, with the handle
 *                                 the parent found; uninitialized, it gets
 *                                 CKR_CRYPTOKI_NOT_INITIALIZED
 *     fork  MODULE fork-in-init   fork while another thread is inside C_Initialize
 *                                 (blocked on a socket that never answers)
 *     fork  MODULE fork-busy      fork, again and again, while other threads sign
 *     fork  MODULE exec           fork and exec this program's exec-child mode
 *     fork  MODULE cycles N       dlopen, initialize, sign, finalize, dlclose, N
 *                                 times; then fork
 *     fork  MODULE finalize-race  threads call while the main thread finalizes
 *                                 and initializes again
 *     fork  MODULE fork-rings     fork a process whose connection has shared-
 *                                 memory rings: the child has no mapping of
 *                                 them (seen from the parent, in /proc/CHILD/maps),
 *                                 its C_Initialize closes its copies of their
 *                                 descriptors, and it works on rings of its own
 *
 * The daemon is found through IHSM_STATE; the partition holds the user PIN
 * below. Every child arms alarm(2), so a hang is a death by SIGALRM that the
 * parent reports, and the test's own timeout stands behind it. Each mode prints
 * "ok MODE" on success and exits 0; anything else is a failure, said on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- The few PKCS#11 types and values used (Unix layout, not packed) ---- */
typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV, CK_SLOT_ID, CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_FLAGS;
typedef unsigned char CK_BBOOL;
typedef struct { CK_ULONG mechanism; void *pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef struct { CK_ULONG type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKF_RW_SESSION 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKU_USER 1UL
#define CKO_PUBLIC_KEY 2UL
#define CKO_PRIVATE_KEY 3UL
#define CKA_CLASS 0x0UL
#define CKA_TOKEN 0x1UL
#define CKA_LABEL 0x3UL
#define CKA_SIGN 0x108UL
#define CKA_VERIFY 0x10aUL
#define CKA_EC_PARAMS 0x180UL
#define CKM_EC_KEY_PAIR_GEN 0x1040UL
#define CKM_ECDSA_SHA256 0x1044UL

#define PIN "user-pin-1234"
#define LABEL "fork-key"

typedef CK_RV (*f_init)(void *);
typedef CK_RV (*f_slots)(CK_BBOOL, CK_SLOT_ID *, CK_ULONG *);
typedef CK_RV (*f_open)(CK_SLOT_ID, CK_FLAGS, void *, void *, CK_SESSION_HANDLE *);
typedef CK_RV (*f_close)(CK_SESSION_HANDLE);
typedef CK_RV (*f_login)(CK_SESSION_HANDLE, CK_ULONG, unsigned char *, CK_ULONG);
typedef CK_RV (*f_genpair)(CK_SESSION_HANDLE, CK_MECHANISM *, CK_ATTRIBUTE *, CK_ULONG,
                           CK_ATTRIBUTE *, CK_ULONG, CK_OBJECT_HANDLE *, CK_OBJECT_HANDLE *);
typedef CK_RV (*f_findinit)(CK_SESSION_HANDLE, CK_ATTRIBUTE *, CK_ULONG);
typedef CK_RV (*f_find)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE *, CK_ULONG, CK_ULONG *);
typedef CK_RV (*f_op_init)(CK_SESSION_HANDLE, CK_MECHANISM *, CK_OBJECT_HANDLE);
typedef CK_RV (*f_sign)(CK_SESSION_HANDLE, unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);
typedef CK_RV (*f_verify)(CK_SESSION_HANDLE, unsigned char *, CK_ULONG, unsigned char *, CK_ULONG);

struct p11 {
    void *lib;
    f_init Initialize, Finalize;
    f_slots GetSlotList;
    f_open OpenSession;
    f_close CloseSession;
    f_login Login;
    f_genpair GenerateKeyPair;
    f_findinit FindObjectsInit;
    f_find FindObjects;
    f_close FindObjectsFinal;
    f_op_init SignInit, VerifyInit;
    f_sign Sign;
    f_verify Verify;
};

static const char *module_path;
static const char *mode = "?";

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s (pid %d): ", mode, (int)getpid());
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    _exit(1);
}

#define CHECK(call, want) do { CK_RV rv_ = (call); \
    if (rv_ != (want)) fail("%s:%d: %s = 0x%lx, not 0x%lx", __FILE__, __LINE__, #call, rv_, (CK_ULONG)(want)); } while (0)

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) fail("no symbol %s", name);
    return p;
}

static struct p11 load(void) {
    struct p11 m;
    m.lib = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    if (!m.lib) fail("dlopen: %s", dlerror());
    m.Initialize = (f_init)sym(m.lib, "C_Initialize");
    m.Finalize = (f_init)sym(m.lib, "C_Finalize");
    m.GetSlotList = (f_slots)sym(m.lib, "C_GetSlotList");
    m.OpenSession = (f_open)sym(m.lib, "C_OpenSession");
    m.CloseSession = (f_close)sym(m.lib, "C_CloseSession");
    m.Login = (f_login)sym(m.lib, "C_Login");
    m.GenerateKeyPair = (f_genpair)sym(m.lib, "C_GenerateKeyPair");
    m.FindObjectsInit = (f_findinit)sym(m.lib, "C_FindObjectsInit");
    m.FindObjects = (f_find)sym(m.lib, "C_FindObjects");
    m.FindObjectsFinal = (f_close)sym(m.lib, "C_FindObjectsFinal");
    m.SignInit = (f_op_init)sym(m.lib, "C_SignInit");
    m.VerifyInit = (f_op_init)sym(m.lib, "C_VerifyInit");
    m.Sign = (f_sign)sym(m.lib, "C_Sign");
    m.Verify = (f_verify)sym(m.lib, "C_Verify");
    return m;
}

static CK_SLOT_ID first_slot(struct p11 *m) {
    CK_SLOT_ID slots[4];
    CK_ULONG n = 4;
    CHECK(m->GetSlotList(1, slots, &n), CKR_OK);
    if (n < 1) fail("no slot");
    return slots[0];
}

/* A read-write session, logged in (the application may be logged in already). */
static CK_SESSION_HANDLE session(struct p11 *m) {
    CK_SESSION_HANDLE h;
    CHECK(m->OpenSession(first_slot(m), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
    CK_RV rv = m->Login(h, CKU_USER, (unsigned char *)PIN, strlen(PIN));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) fail("C_Login = 0x%lx", rv);
    return h;
}

/* The token key of LABEL of a class: its handle, or 0. */
static CK_OBJECT_HANDLE find(struct p11 *m, CK_SESSION_HANDLE h, CK_ULONG class) {
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &class, sizeof class},
        {CKA_LABEL, LABEL, strlen(LABEL)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CHECK(m->FindObjectsInit(h, t, 2), CKR_OK);
    CHECK(m->FindObjects(h, found, 2, &n), CKR_OK);
    CHECK(m->FindObjectsFinal(h), CKR_OK);
    if (n > 1) fail("%lu keys of label %s", n, LABEL);
    return n ? found[0] : 0;
}

static void make_key(struct p11 *m, CK_SESSION_HANDLE h) {
    if (find(m, h, CKO_PRIVATE_KEY)) return;
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = 1;
    CK_ATTRIBUTE pub[] = {
        {CKA_EC_PARAMS, (void *)p256, sizeof p256}, {CKA_TOKEN, &yes, 1},
        {CKA_LABEL, LABEL, strlen(LABEL)}, {CKA_VERIFY, &yes, 1},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, 1}, {CKA_LABEL, LABEL, strlen(LABEL)}, {CKA_SIGN, &yes, 1},
    };
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pk, sk;
    CHECK(m->GenerateKeyPair(h, &gen, pub, 4, priv, 3, &pk, &sk), CKR_OK);
}

/* Signs with sk and checks the signature with pk; returns C_Sign's code. */
static CK_RV sign_verify(struct p11 *m, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE sk, CK_OBJECT_HANDLE pk) {
    CK_MECHANISM mech = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char data[] = "signed across a fork";
    unsigned char sig[128];
    CK_ULONG len = sizeof sig;
    CK_RV rv = m->SignInit(h, &mech, sk);
    if (rv != CKR_OK) return rv;
    rv = m->Sign(h, data, sizeof data, sig, &len);
    if (rv != CKR_OK) return rv;
    CHECK(m->VerifyInit(h, &mech, pk), CKR_OK);
    CHECK(m->Verify(h, data, sizeof data, sig, len), CKR_OK);
    return CKR_OK;
}

/* Waits for a child; it must have printed nothing wrong and exited 0. */
static void reap(pid_t pid, const char *what) {
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) fail("waitpid: %s", strerror(errno));
    if (WIFSIGNALED(status))
        fail("%s: child killed by signal %d%s", what, WTERMSIG(status),
             WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
    if (WEXITSTATUS(status) != 0) fail("%s: child exited %d", what, WEXITSTATUS(status));
}

/* The child of a fork: uninitialized, then initialized and logged in anew; it
 * signs with the handles its parent found, and finds the same ones. */
static void child_after_fork(struct p11 *m, CK_OBJECT_HANDLE sk, CK_OBJECT_HANDLE pk) {
    alarm(30);
    CK_SLOT_ID slot;
    CK_ULONG n = 1;
    CHECK(m->GetSlotList(1, &slot, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
    CK_SESSION_HANDLE none;
    CHECK(m->OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &none), CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK(m->Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK(m->Initialize(NULL), CKR_OK);
    CHECK(m->Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CK_SESSION_HANDLE h = session(m);
    CHECK(sign_verify(m, h, sk, pk), CKR_OK);
    if (find(m, h, CKO_PRIVATE_KEY) != sk || find(m, h, CKO_PUBLIC_KEY) != pk)
        fail("the handles the parent found name other objects in the child");
    CHECK(m->Finalize(NULL), CKR_OK);
    _exit(0);
}

static void fork_sign(void) {
    struct p11 m = load();
    CHECK(m.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&m);
    make_key(&m, h);
    CK_OBJECT_HANDLE sk = find(&m, h, CKO_PRIVATE_KEY), pk = find(&m, h, CKO_PUBLIC_KEY);
    if (!sk || !pk) fail("no key");
    CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) child_after_fork(&m, sk, pk);
        /* The parent goes on on its own connections meanwhile. */
        CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
        reap(pid, "fork-sign");
        CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    }
    CHECK(m.CloseSession(h), CKR_OK);
    CHECK(m.Finalize(NULL), CKR_OK);
}

/* ---- fork while another thread is inside C_Initialize ---- */

static struct p11 shared;

static void *initialize_thread(void *arg) {
    (void)arg;
    /* Blocks until the silent socket below closes; then finds no slot there. */
    CK_RV rv = shared.Initialize(NULL);
    if (rv != CKR_OK) fail("C_Initialize on the silent socket = 0x%lx", rv);
    return NULL;
}

static void fork_in_init(void) {
    const char *real = getenv("IHSM_STATE");
    if (!real) fail("IHSM_STATE unset");
    char dir[] = "/tmp/ihsm-fork-XXXXXX";
    if (!mkdtemp(dir)) fail("mkdtemp: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/silent.sock", dir);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 4) < 0)
        fail("silent socket: %s", strerror(errno));
    shared = load();
    /* The thread's C_Initialize tries the silent socket only. */
    setenv("IHSM_SOCKET", sa.sun_path, 1);
    pthread_t t;
    if (pthread_create(&t, NULL, initialize_thread, NULL)) fail("pthread_create");
    /* Once its connection is accepted, the thread is inside C_Initialize, waiting
     * for an answer that does not come. */
    int c = accept(l, NULL, NULL);
    if (c < 0) fail("accept: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(30);
        unsetenv("IHSM_SOCKET");
        CHECK(shared.Initialize(NULL), CKR_OK);
        CK_SESSION_HANDLE h = session(&shared);
        make_key(&shared, h);
        CK_OBJECT_HANDLE sk = find(&shared, h, CKO_PRIVATE_KEY), pk = find(&shared, h, CKO_PUBLIC_KEY);
        CHECK(sign_verify(&shared, h, sk, pk), CKR_OK);
        CHECK(shared.Finalize(NULL), CKR_OK);
        _exit(0);
    }
    reap(pid, "fork-in-init");
    /* Now let the parent's thread go: its C_Initialize finds no slot. */
    close(c);
    pthread_join(t, NULL);
    CHECK(shared.Finalize(NULL), CKR_OK);
    close(l);
    unlink(sa.sun_path);
    rmdir(dir);
}

/* ---- fork again and again while other threads sign ---- */

static atomic_int stop;
static CK_OBJECT_HANDLE busy_sk, busy_pk;

static void *signing_thread(void *arg) {
    (void)arg;
    CK_SESSION_HANDLE h = session(&shared);
    while (!atomic_load(&stop)) CHECK(sign_verify(&shared, h, busy_sk, busy_pk), CKR_OK);
    CHECK(shared.CloseSession(h), CKR_OK);
    return NULL;
}

static void fork_busy(void) {
    shared = load();
    CHECK(shared.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&shared);
    make_key(&shared, h);
    busy_sk = find(&shared, h, CKO_PRIVATE_KEY);
    busy_pk = find(&shared, h, CKO_PUBLIC_KEY);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, signing_thread, NULL)) fail("pthread_create");
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) child_after_fork(&shared, busy_sk, busy_pk);
        reap(pid, "fork-busy");
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    CHECK(shared.CloseSession(h), CKR_OK);
    CHECK(shared.Finalize(NULL), CKR_OK);
}

/* ---- exec after fork ---- */

/* Sockets among this process's descriptors. */
static int sockets_open(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) fail("/proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        char p[300];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISSOCK(st.st_mode)) n++;
    }
    closedir(d);
    return n;
}

static void exec_child(void) {
    alarm(30);
    /* Nothing of the parent's connections came through exec. */
    if (sockets_open() != 0) fail("%d sockets inherited through exec", sockets_open());
    struct p11 m = load();
    CHECK(m.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&m);
    CHECK(sign_verify(&m, h, find(&m, h, CKO_PRIVATE_KEY), find(&m, h, CKO_PUBLIC_KEY)), CKR_OK);
    CHECK(m.Finalize(NULL), CKR_OK);
    printf("ok exec-child\n");
}

static void exec_after_fork(const char *self) {
    struct p11 m = load();
    CHECK(m.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&m);
    make_key(&m, h);
    if (sockets_open() == 0) fail("the module holds no connection before the fork");
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        execl(self, self, module_path, "exec-child", (char *)NULL);
        fail("exec: %s", strerror(errno));
    }
    reap(pid, "exec");
    CHECK(sign_verify(&m, h, find(&m, h, CKO_PRIVATE_KEY), find(&m, h, CKO_PUBLIC_KEY)), CKR_OK);
    CHECK(m.Finalize(NULL), CKR_OK);
}

/* ---- dlopen / dlclose cycles ---- */

static void cycles(int n) {
    int before = sockets_open();
    for (int i = 0; i < n; i++) {
        struct p11 m = load();
        CHECK(m.Initialize(NULL), CKR_OK);
        CK_SESSION_HANDLE h = session(&m);
        make_key(&m, h);
        CHECK(sign_verify(&m, h, find(&m, h, CKO_PRIVATE_KEY), find(&m, h, CKO_PUBLIC_KEY)), CKR_OK);
        CHECK(m.Finalize(NULL), CKR_OK);
        if (dlclose(m.lib)) fail("dlclose: %s", dlerror());
    }
    if (sockets_open() != before) fail("%d sockets left open after %d cycles", sockets_open() - before, n);
    /* A fork handler left by an unloaded module would crash here. */
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) _exit(0);
    reap(pid, "fork after the cycles");
}

/* ---- threads calling while C_Finalize and C_Initialize run ---- */

static atomic_long calls, unexpected;
static CK_RV last_unexpected;

static void note(CK_RV rv) {
    atomic_fetch_add(&calls, 1);
    /* A call that raced C_Finalize may find the module, or its session, gone;
     * it may also have begun in time. A panic would be CKR_GENERAL_ERROR. */
    switch (rv) {
    case CKR_OK: case CKR_CRYPTOKI_NOT_INITIALIZED: case CKR_USER_ALREADY_LOGGED_IN:
    case 0xb3UL /* CKR_SESSION_HANDLE_INVALID */: case 0xb0UL /* CKR_SESSION_CLOSED */:
    case 0x91UL /* CKR_OPERATION_NOT_INITIALIZED */: case 0x101UL /* CKR_USER_NOT_LOGGED_IN */:
    case 0x82UL /* CKR_OBJECT_HANDLE_INVALID */: case 0x60UL /* CKR_KEY_HANDLE_INVALID */:
    case 0x3UL /* CKR_SLOT_ID_INVALID */: case 0x32UL /* CKR_DEVICE_REMOVED */:
    case 0x30UL /* CKR_DEVICE_ERROR */:
        return;
    default:
        last_unexpected = rv;
        atomic_fetch_add(&unexpected, 1);
    }
}

static void *racing_thread(void *arg) {
    CK_OBJECT_HANDLE *keys = arg;
    CK_MECHANISM mech = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char data[] = "raced", sig[128];
    while (!atomic_load(&stop)) {
        CK_SLOT_ID slot;
        CK_ULONG n = 1;
        CK_RV rv = shared.GetSlotList(1, &slot, &n);
        note(rv);
        if (rv != CKR_OK || n < 1) continue;
        CK_SESSION_HANDLE h;
        rv = shared.OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
        note(rv);
        if (rv != CKR_OK) continue;
        note(shared.Login(h, CKU_USER, (unsigned char *)PIN, strlen(PIN)));
        for (int i = 0; i < 4; i++) {
            CK_ULONG len = sizeof sig;
            rv = shared.SignInit(h, &mech, keys[0]);
            note(rv);
            if (rv == CKR_OK) note(shared.Sign(h, data, sizeof data, sig, &len));
        }
        note(shared.CloseSession(h));
    }
    return NULL;
}

static void finalize_race(void) {
    shared = load();
    CHECK(shared.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&shared);
    make_key(&shared, h);
    CK_OBJECT_HANDLE keys[2] = {find(&shared, h, CKO_PRIVATE_KEY), find(&shared, h, CKO_PUBLIC_KEY)};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, racing_thread, keys)) fail("pthread_create");
    for (int r = 0; r < 40; r++) {
        CHECK(shared.Finalize(NULL), CKR_OK);
        CHECK(shared.Initialize(NULL), CKR_OK);
        /* Let the threads get some calls in with the module up. */
        long seen = atomic_load(&calls);
        while (atomic_load(&calls) < seen + 20 && !atomic_load(&unexpected)) sched_yield();
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (atomic_load(&unexpected))
        fail("%ld unexpected answers, the last 0x%lx", atomic_load(&unexpected), last_unexpected);
    /* Still whole: a session signs after it all. */
    h = session(&shared);
    CHECK(sign_verify(&shared, h, keys[0], keys[1]), CKR_OK);
    CHECK(shared.Finalize(NULL), CKR_OK);
    fprintf(stderr, "%ld calls raced C_Finalize\n", atomic_load(&calls));
}

/* ---- fork with shared-memory rings ---- */

#define MAX_RINGS 16

/* The inodes of the ring regions (memfd "ihsm-ring") pid maps; how many. */
static int ring_maps(pid_t pid, unsigned long *inodes) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) fail("%s: %s", path, strerror(errno));
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long ino;
        if (!strstr(line, "memfd:ihsm-ring")) continue;
        if (sscanf(line, "%*s %*s %*s %*s %lu", &ino) != 1) fail("maps line: %s", line);
        int seen = 0;
        for (int i = 0; i < n; i++) seen |= inodes[i] == ino;
        if (!seen && n < MAX_RINGS) inodes[n++] = ino;
    }
    fclose(f);
    return n;
}

/* How many of this process's descriptors are of a region in inodes[0..n). */
static int ring_fds(const unsigned long *inodes, int n) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) fail("/proc/self/fd: %s", strerror(errno));
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300];
        struct stat st;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        if (stat(path, &st) != 0) continue;
        for (int i = 0; i < n; i++) found += (unsigned long)st.st_ino == inodes[i];
    }
    closedir(d);
    return found;
}

static int shares(const unsigned long *a, int na, const unsigned long *b, int nb) {
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (a[i] == b[j]) return 1;
    return 0;
}

static void fork_rings(void) {
    const char *transport = getenv("IHSM_TRANSPORT");
    int rings = !(transport && !strcmp(transport, "socket"));
    struct p11 m = load();
    CHECK(m.Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE h = session(&m);
    make_key(&m, h);
    CK_OBJECT_HANDLE sk = find(&m, h, CKO_PRIVATE_KEY), pk = find(&m, h, CKO_PUBLIC_KEY);
    if (!sk || !pk) fail("no key");
    CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    unsigned long mine[MAX_RINGS];
    int nmine = ring_maps(getpid(), mine);
    if (rings && nmine < 1) fail("the parent's connection has no ring mapped");
    if (!rings && nmine) fail("IHSM_TRANSPORT=socket and %d rings mapped", nmine);
    if (ring_fds(mine, nmine) < 1 && rings) fail("the parent holds no descriptor of its ring");
    int go[2], done[2];
    if (pipe(go) || pipe(done)) fail("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(30);
        char b;
        close(go[1]);
        close(done[0]);
        /* The parent looks at this process's mappings meanwhile. */
        if (read(go[0], &b, 1) != 1) fail("the parent did not say go");
        /* Inherited: descriptors (fork copies them all), not mappings. */
        if (ring_maps(getpid(), (unsigned long[MAX_RINGS]){0})) fail("the child maps a ring at once");
        if (rings && ring_fds(mine, nmine) < 1) fail("the child inherited no descriptor to look for");
        CHECK(m.Initialize(NULL), CKR_OK);
        int left = ring_fds(mine, nmine);
        if (left) fail("after C_Initialize the child still holds %d descriptors of its parent's rings", left);
        CK_SESSION_HANDLE ch = session(&m);
        for (int i = 0; i < 3; i++) CHECK(sign_verify(&m, ch, sk, pk), CKR_OK);
        unsigned long own[MAX_RINGS];
        int nown = ring_maps(getpid(), own);
        if (rings && nown < 1) fail("the child's connection has no ring of its own");
        if (shares(own, nown, mine, nmine)) fail("the child maps its parent's ring");
        /* The parent checks these are not its own either while they live. */
        if (write(done[1], &nown, sizeof nown) != sizeof nown ||
            write(done[1], own, sizeof own) != sizeof own)
            fail("cannot tell the parent");
        if (read(go[0], &b, 1) != 1) fail("the parent did not say finish");
        CHECK(m.Finalize(NULL), CKR_OK);
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    /* Seen from the parent: the child has none of its regions mapped. */
    unsigned long childs[MAX_RINGS];
    if (ring_maps(pid, childs)) fail("the forked child maps its parent's ring (no MADV_DONTFORK)");
    CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    if (write(go[1], "g", 1) != 1) fail("cannot tell the child");
    int nown = 0;
    unsigned long own[MAX_RINGS];
    if (read(done[0], &nown, sizeof nown) != sizeof nown || read(done[0], own, sizeof own) != sizeof own)
        fail("the child said nothing");
    /* Both work at once, each on its own ring. */
    CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    unsigned long now[MAX_RINGS];
    int nnow = ring_maps(getpid(), now);
    if (shares(now, nnow, own, nown)) fail("the parent maps its child's ring");
    if (rings && !shares(now, nnow, mine, nmine)) fail("the parent lost its ring");
    if (write(go[1], "f", 1) != 1) fail("cannot tell the child");
    reap(pid, "fork-rings");
    CHECK(sign_verify(&m, h, sk, pk), CKR_OK);
    CHECK(m.CloseSession(h), CKR_OK);
    CHECK(m.Finalize(NULL), CKR_OK);
    printf("rings: parent %d, child %d\n", nmine, nown);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODULE MODE [N]\n", argv[0]);
        return 2;
    }
    module_path = argv[1];
    mode = argv[2];
    /* However a mode hangs, the process ends: killed by SIGALRM, which the test
     * reports. (Each child arms its own.) */
    alarm(150);
    if (!strcmp(mode, "fork-sign")) fork_sign();
    else if (!strcmp(mode, "fork-in-init")) fork_in_init();
    else if (!strcmp(mode, "fork-busy")) fork_busy();
    else if (!strcmp(mode, "exec")) exec_after_fork(argv[0]);
    else if (!strcmp(mode, "exec-child")) { exec_child(); return 0; }
    else if (!strcmp(mode, "cycles")) cycles(argc > 3 ? atoi(argv[3]) : 10);
    else if (!strcmp(mode, "finalize-race")) finalize_race();
    else if (!strcmp(mode, "fork-rings")) fork_rings();
    else fail("no mode %s", mode);
    printf("ok %s\n", mode);
    return 0;
}
