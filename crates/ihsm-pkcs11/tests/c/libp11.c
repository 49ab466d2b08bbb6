/* What a TLS server does with its key in ihsm: OpenSSL's pkcs11 engine (libp11)
 * loads the key in the master process, which forks its workers; each worker
 * signs with the key object it inherited, and libp11, seeing the fork, calls
 * C_Initialize again, logs in again, opens its sessions again and finds the key
 * again. tests/fork.rs compiles this with cc against libcrypto:
 *
 *     libp11 MODULE URI fork         master and three workers sign; the key
 *                                    verifies every signature
 *     libp11 MODULE URI refused UID  the worker drops to UID, which the partition
 *                                    does not admit, and signs: the module says
 *                                    why on stderr (libp11 then waits for ever,
 *                                    as 0.4.12 does after a failed C_OpenSession;
 *                                    the test ends the worker once it has read
 *                                    the line)
 *
 * URI is the key's pkcs11: URI, with its PIN and without its type. Prints
 * "ok MODE" on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *mode = "?";

static void fail(const char *what) {
    fprintf(stderr, "FAIL %s (pid %d): %s\n", mode, (int)getpid(), what);
    ERR_print_errors_fp(stderr);
    _exit(1);
}

static const unsigned char data[] = "a TLS handshake's transcript, signed in a worker";

static size_t sign(EVP_PKEY *key, unsigned char *sig, size_t room) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t len = room;
    if (!c || EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(c, sig, &len, data, sizeof data) != 1)
        fail("sign");
    EVP_MD_CTX_free(c);
    return len;
}

static void verify(EVP_PKEY *key, const unsigned char *sig, size_t len) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestVerify(c, sig, len, data, sizeof data) != 1)
        fail("verify");
    EVP_MD_CTX_free(c);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODULE URI MODE [UID]\n", argv[0]);
        return 2;
    }
    mode = argv[3];
    alarm(150);
    ENGINE *e = ENGINE_by_id("pkcs11");
    if (!e) fail("no pkcs11 engine (libengine-pkcs11-openssl)");
    if (!ENGINE_ctrl_cmd_string(e, "MODULE_PATH", argv[1], 0)) fail("MODULE_PATH");
    if (!ENGINE_init(e)) fail("ENGINE_init");
    char uri[512];
    snprintf(uri, sizeof uri, "%s;type=private", argv[2]);
    EVP_PKEY *key = ENGINE_load_private_key(e, uri, NULL, NULL);
    if (!key) fail("ENGINE_load_private_key");
    snprintf(uri, sizeof uri, "%s;type=public", argv[2]);
    EVP_PKEY *pub = ENGINE_load_public_key(e, uri, NULL, NULL);
    if (!pub) fail("ENGINE_load_public_key");
    unsigned char sig[256];
    size_t len = sign(key, sig, sizeof sig);
    verify(pub, sig, len);

    if (!strcmp(mode, "fork")) {
        for (int i = 0; i < 3; i++) {
            pid_t pid = fork();
            if (pid < 0) fail("fork");
            if (pid == 0) {
                alarm(60);
                unsigned char s[256];
                size_t l = sign(key, s, sizeof s);
                verify(pub, s, l);
                _exit(0);
            }
            int status;
            while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) fail("waitpid");
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "worker %d: status 0x%x%s\n", i, status,
                        WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
                fail("a worker could not sign");
            }
            /* The master signs on. */
            len = sign(key, sig, sizeof sig);
            verify(pub, sig, len);
        }
    } else if (!strcmp(mode, "refused") && argc > 4) {
        pid_t pid = fork();
        if (pid < 0) fail("fork");
        if (pid == 0) {
            /* nginx's worker: the master's user goes, the configured one comes. */
            uid_t uid = (uid_t)atoi(argv[4]);
            if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
                fail("cannot become the worker's user");
            fprintf(stderr, "worker signing as uid %d\n", (int)uid);
            unsigned char s[256];
            sign(key, s, sizeof s);
            fail("a worker the partition does not admit signed");
        }
        /* The test ends the worker (libp11 waits for ever) and then this. */
        int status;
        waitpid(pid, &status, 0);
        fail("the refused worker ended by itself");
    } else {
        fail("no such mode");
    }
    printf("ok %s\n", mode);
    return 0;
}
