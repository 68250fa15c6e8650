/*
 * NSS module for the benchmark's synthetic users, loaded by nss_wrapper
 * (NSS_WRAPPER_MODULE_SO_PATH, NSS_WRAPPER_MODULE_FN_PREFIX=bench).
 *
 * user000000 .. user(N-1), uid 200000+i, primary group 100 ("users", from
 * NSS_WRAPPER_GROUP), home $BENCH_NSS_HOME/userNNNNNN. A lookup costs the
 * same at every N, as with sssd's or nscd's indexed caches. nss_wrapper's
 * own files backend scans its list linearly, logging (getenv) per entry:
 * about 1 ms per lookup at 100,000 users, which would swamp the modules
 * being measured.
 */
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define FIRST_UID 200000u
#define USERS_GID 100u

static long bench_users(void)
{
	const char *n = getenv("BENCH_NSS_USERS");
	return n ? atol(n) : 0;
}

static enum nss_status fill(long i, struct passwd *pw, char *buf, size_t len,
			    int *errnop)
{
	const char *home = getenv("BENCH_NSS_HOME");
	int need;

	if (home == NULL || i < 0 || i >= bench_users())
		return NSS_STATUS_NOTFOUND;
	/* name, "x", gecos, home, shell: packed into the caller's buffer */
	need = snprintf(buf, len, "user%06ld%cx%cbench user%c%s/user%06ld%c/bin/false",
			i, 0, 0, 0, home, i, 0);
	if (need < 0 || (size_t)need >= len) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	pw->pw_name = buf;
	pw->pw_passwd = pw->pw_name + strlen(pw->pw_name) + 1;
	pw->pw_gecos = pw->pw_passwd + strlen(pw->pw_passwd) + 1;
	pw->pw_dir = pw->pw_gecos + strlen(pw->pw_gecos) + 1;
	pw->pw_shell = pw->pw_dir + strlen(pw->pw_dir) + 1;
	pw->pw_uid = FIRST_UID + (uid_t)i;
	pw->pw_gid = USERS_GID;
	return NSS_STATUS_SUCCESS;
}

static long index_of(const char *name)
{
	char *end;
	long i;

	if (strncmp(name, "user", 4) != 0 || strlen(name) != 10)
		return -1;
	i = strtol(name + 4, &end, 10);
	return *end == '\0' ? i : -1;
}

enum nss_status _nss_bench_getpwnam_r(const char *name, struct passwd *pw,
				      char *buf, size_t len, int *errnop)
{
	return fill(index_of(name), pw, buf, len, errnop);
}

enum nss_status _nss_bench_getpwuid_r(uid_t uid, struct passwd *pw,
				      char *buf, size_t len, int *errnop)
{
	if (uid < FIRST_UID)
		return NSS_STATUS_NOTFOUND;
	return fill((long)(uid - FIRST_UID), pw, buf, len, errnop);
}

/* Enumeration is not offered (like many directory backends). */
enum nss_status _nss_bench_setpwent(void) { return NSS_STATUS_SUCCESS; }
enum nss_status _nss_bench_endpwent(void) { return NSS_STATUS_SUCCESS; }
enum nss_status _nss_bench_getpwent_r(struct passwd *pw, char *buf, size_t len,
				      int *errnop)
{
	(void)pw; (void)buf; (void)len; (void)errnop;
	return NSS_STATUS_NOTFOUND;
}

/* Groups live in NSS_WRAPPER_GROUP; no supplementary groups here. */
enum nss_status _nss_bench_initgroups_dyn(const char *user, gid_t group,
					  long int *start, long int *size,
					  gid_t **groups, long int limit,
					  int *errnop)
{
	(void)user; (void)group; (void)start; (void)size; (void)groups;
	(void)limit; (void)errnop;
	return NSS_STATUS_NOTFOUND;
}
enum nss_status _nss_bench_getgrnam_r(const char *name, struct group *gr,
				      char *buf, size_t len, int *errnop)
{
	(void)name; (void)gr; (void)buf; (void)len; (void)errnop;
	return NSS_STATUS_NOTFOUND;
}
enum nss_status _nss_bench_getgrgid_r(gid_t gid, struct group *gr, char *buf,
				      size_t len, int *errnop)
{
	(void)gid; (void)gr; (void)buf; (void)len; (void)errnop;
	return NSS_STATUS_NOTFOUND;
}
enum nss_status _nss_bench_setgrent(void) { return NSS_STATUS_SUCCESS; }
enum nss_status _nss_bench_endgrent(void) { return NSS_STATUS_SUCCESS; }
enum nss_status _nss_bench_getgrent_r(struct group *gr, char *buf, size_t len,
				      int *errnop)
{
	(void)gr; (void)buf; (void)len; (void)errnop;
	return NSS_STATUS_NOTFOUND;
}
