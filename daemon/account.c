/* account.c: per-uid accounts: reference-counted records of what a uid's sessions hold. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>

#include "account.h"

static const char *const res_names[ACCT_NRES] = {
	[ACCT_SESSIONS] = "sessions",           [ACCT_ARENA] = "pinned arena bytes",
	[ACCT_MEM] = "device memory bytes",     [ACCT_CHANNELS] = "open channels",
	[ACCT_CHANNEL_BYTES] = "channel bytes",
};

void account_table_init(struct account_table *t)
{
	pthread_mutex_init(&t->lock, NULL);
	LIST_INIT(&t->list);
	t->count = 0;
}

void account_table_fini(struct account_table *t)
{
	struct account *a;

	while ((a = LIST_FIRST(&t->list))) {
		LIST_REMOVE(a, link);
		free(a);
	}
	t->count = 0;
	pthread_mutex_destroy(&t->lock);
}

struct account *account_get(struct account_table *t, uid_t uid)
{
	struct account *a;

	pthread_mutex_lock(&t->lock);
	LIST_FOREACH(a, &t->list, link)
		if (a->uid == uid)
			break;
	if (!a) {
		a = calloc(1, sizeof(*a));
		if (a) {
			a->uid = uid;
			atomic_init(&a->inflight, 0);
			LIST_INSERT_HEAD(&t->list, a, link);
			t->count++;
		}
	}
	if (a)
		a->refs++;
	pthread_mutex_unlock(&t->lock);
	return a;
}

void account_put(struct account_table *t, struct account *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&t->lock);
	/*
	 * An account whose last session ended stays in the table (one per uid
	 * ever seen, freed at fini): a session a hung device would not release
	 * keeps pointing at its in-flight counter.
	 */
	a->refs--;
	pthread_mutex_unlock(&t->lock);
}

int account_charge(struct account_table *t, struct account *a, enum account_res res, uint64_t n,
		   uint64_t limit, uint64_t *used)
{
	int r = 0;

	pthread_mutex_lock(&t->lock);
	if (used)
		*used = a->used[res];
	if (limit && (n > limit || a->used[res] > limit - n))
		r = -EDQUOT;
	else
		a->used[res] += n;
	pthread_mutex_unlock(&t->lock);
	return r;
}

void account_uncharge(struct account_table *t, struct account *a, enum account_res res, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	a->used[res] = a->used[res] > n ? a->used[res] - n : 0;
	pthread_mutex_unlock(&t->lock);
}

uint64_t account_used(struct account_table *t, struct account *a, enum account_res res)
{
	uint64_t v;

	pthread_mutex_lock(&t->lock);
	v = a->used[res];
	pthread_mutex_unlock(&t->lock);
	return v;
}

const char *account_res_name(enum account_res res)
{
	return res < ACCT_NRES ? res_names[res] : "?";
}
