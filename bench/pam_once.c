/* One login in a fresh process, as sshd's child does it: pam_start,
 * pam_authenticate, pam_end, timed from inside. A C program, so that the
 * process has not already loaded what a Rust module needs (libgcc_s), as
 * sshd, su and login have not. Prints "RC MICROSECONDS".
 *
 * usage: pam_once SERVICE USER CODE   (every prompt is answered with CODE)
 *        pam_once --rss MODULE.so SERVICE USER CODE
 *   the second form prints the resident memory that loading MODULE and one
 *   login through SERVICE add, after a login through bench-permit has set
 *   up libpam's own state.
 */
#include <dlfcn.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int answer(int n, const struct pam_message **msg, struct pam_response **resp, void *code)
{
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (r == NULL)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++)
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
            r[i].resp = strdup(code);
    *resp = r;
    return PAM_SUCCESS;
}

static int login(const char *service, const char *user, char *code)
{
    struct pam_conv conv = { answer, code };
    pam_handle_t *pamh = NULL;
    int rc = pam_start(service, user, &conv, &pamh);
    if (rc != PAM_SUCCESS)
        return 1000 + rc; /* pam_start failed: not the module's doing */
    rc = pam_authenticate(pamh, 0);
    pam_end(pamh, rc);
    return rc;
}

/* VmRSS, RssAnon, RssFile in KiB. */
static void rss(long out[3])
{
    static const char *keys[3] = { "VmRSS:", "RssAnon:", "RssFile:" };
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    out[0] = out[1] = out[2] = 0;
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f))
        for (int i = 0; i < 3; i++)
            if (strncmp(line, keys[i], strlen(keys[i])) == 0)
                out[i] = strtol(line + strlen(keys[i]), NULL, 10);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--rss") == 0) {
        long before[3], after[3];
        login("bench-permit", "root", argv[5]);
        rss(before);
        void *kept = dlopen(argv[2], RTLD_NOW); /* stays mapped, as in a long-lived process */
        int rc = login(argv[3], argv[4], argv[5]);
        rss(after);
        printf("RESULT service=%s rss_added_kib=%ld anon_added_kib=%ld file_added_kib=%ld login_ok=%s\n",
               argv[3] + (strncmp(argv[3], "bench-", 6) == 0 ? 6 : 0), after[0] - before[0],
               after[1] - before[1], after[2] - before[2],
               kept != NULL && rc == PAM_SUCCESS ? "true" : "false");
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: pam_once SERVICE USER CODE | pam_once --rss MODULE.so SERVICE USER CODE\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = login(argv[1], argv[2], argv[3]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%d %.1f\n", rc, (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3);
    return 0;
}
