/* replay.c: runs every file of a fuzz target's corpus through its entry point, with the normal compiler. */
#include "build-config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/* Reads path whole into a malloc'd buffer. Returns 0, or -1. */
static int slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (!f)
		return -1;
	do {
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap = cap ? cap * 2 : 4096);

			if (!nb) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got);
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
}

/*
 * Arguments: directories (or files) of inputs; none: the target's corpus
 * in the source tree. Exit 0 when every input ran, 1 when one could not be
 * read (a bug in the code under test aborts).
 */
int main(int argc, char **argv)
{
	static const char *def[] = { GPUQ_SRCDIR "/tests/fuzz/corpus/" FUZZ_TARGET };
	const char *const *dirs = argc > 1 ? (const char *const *)argv + 1 : def;
	int ndirs = argc > 1 ? argc - 1 : 1, i, runs = 0, bad = 0;

	for (i = 0; i < ndirs; i++) {
		DIR *dp = opendir(dirs[i]);
		struct dirent *e;
		char path[4096];
		uint8_t *buf;
		size_t len;

		if (!dp) {
			/* A file named directly. */
			if (slurp(dirs[i], &buf, &len)) {
				fprintf(stderr, "%s: cannot read\n", dirs[i]);
				bad = 1;
				continue;
			}
			LLVMFuzzerTestOneInput(buf, len);
			free(buf);
			runs++;
			continue;
		}
		while ((e = readdir(dp))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name);
			if (slurp(path, &buf, &len)) {
				fprintf(stderr, "%s: cannot read\n", path);
				bad = 1;
				continue;
			}
			LLVMFuzzerTestOneInput(buf, len);
			free(buf);
			runs++;
		}
		closedir(dp);
	}
	printf("%s: %d inputs replayed\n", FUZZ_TARGET, runs);
	if (!runs)
		bad = 1;
	return bad;
}
