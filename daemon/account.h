/* account.h: one account per uid with live counts of what its sessions hold, checked against per-uid limits. */
#ifndef GPUQ_ACCOUNT_H
#define GPUQ_ACCOUNT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

/* What an account counts. */
enum account_res {
	ACCT_SESSIONS,      /* sessions */
	ACCT_ARENA,         /* pinned arena bytes */
	ACCT_MEM,           /* device memory of buffers */
	ACCT_CHANNELS,      /* channels held open */
	ACCT_CHANNEL_BYTES, /* bytes of those channels */
	ACCT_NRES
};

/*
 * One uid's account. Counts change under the table's lock (any thread);
 * inflight is the engines' own counter of requests in flight (the session's
 * uid_inflight points at it). An account lives while a reference is held.
 */
struct account {
	LIST_ENTRY(account) link;
	uid_t uid;
	unsigned refs;
	uint64_t used[ACCT_NRES];
	_Atomic uint32_t inflight;
};

/* Every account with a reference. Owned by the server (init/fini). */
struct account_table {
	pthread_mutex_t lock;
	LIST_HEAD(, account) list;
	unsigned count;
};

void account_table_init(struct account_table *t);
/* All references must be gone. */
void account_table_fini(struct account_table *t);

/* The account of uid, created with zero counts if none; takes a reference. NULL on -ENOMEM. */
struct account *account_get(struct account_table *t, uid_t uid);
/* Drops a reference taken by account_get; the last one frees the account. */
void account_put(struct account_table *t, struct account *a);

/*
 * Adds n of res if that keeps the count at most limit (0 = unlimited).
 * Returns 0, or -EDQUOT leaving the count unchanged; *used (may be NULL)
 * gets the count before the call, for the error message.
 */
int account_charge(struct account_table *t, struct account *a, enum account_res res, uint64_t n,
		   uint64_t limit, uint64_t *used);
/* Gives back n of res (never below zero). */
void account_uncharge(struct account_table *t, struct account *a, enum account_res res, uint64_t n);
/* The current count of res. */
uint64_t account_used(struct account_table *t, struct account *a, enum account_res res);
/* The name of res for messages ("sessions", "arena bytes", ...). */
const char *account_res_name(enum account_res res);

#endif
