/* fuzz_frame.c: frame_check and frame_unpack on any bytes, as gpuqd's receive buffer meets them. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz.h"

/*
 * Does m, or a message inside it, keep unknown fields? protobuf-c takes a
 * field number 0 in a long varint key as unknown and packs it back in a
 * form it then refuses: such messages are exempt from the round trip
 * (gpuqd never packs a message it received).
 */
static int has_unknown(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	unsigned i;

	if (m->n_unknown_fields)
		return 1;
	for (i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const uint8_t *base = (const uint8_t *)m;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset), k;
			ProtobufCMessage *const *v =
				*(ProtobufCMessage *const *const *)(base + f->offset);

			for (k = 0; k < n; k++)
				if (v[k] && has_unknown(v[k]))
					return 1;
		} else {
			const ProtobufCMessage *sub =
				*(ProtobufCMessage *const *)(base + f->offset);

			if (sub && has_unknown(sub))
				return 1;
		}
	}
	return 0;
}

/*
 * The input is a receive buffer: frames are cut from it the way the
 * control loop cuts them, under a cap picked by the first byte. Each
 * unpacked message is packed again and must unpack to the same bytes.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t caps[] = { 0, 1, 16, 4096, FRAME_MAX_DEFAULT, FRAME_MAX_LIMIT };
	uint32_t max;
	size_t off = 1;

	if (size < 1)
		return 0;
	max = caps[data[0] % (sizeof(caps) / sizeof(caps[0]))];
	while (off < size) {
		ssize_t n = frame_check(data + off, size - off, max);
		Gpuq__Msg *m;

		if (n == 0 || n < 0) {
			/* Needs more, or refused: never beyond what was there or the cap. */
			if (n < 0 && n != -EMSGSIZE)
				abort();
			break;
		}
		if ((size_t)n > size - off || (size_t)n < FRAME_HDR || (size_t)n - FRAME_HDR > max)
			abort();
		m = frame_unpack(data + off, (size_t)n);
		if (m) {
			uint8_t *buf;
			size_t len;

			(void)frame_body_name(m->body_case);
			if (frame_pack(m, FRAME_MAX_LIMIT, &buf, &len) == 0) {
				Gpuq__Msg *again = frame_unpack(buf, len);
				uint8_t *buf2;
				size_t len2;

				if (!again && !has_unknown(&m->base))
					abort(); /* what we packed must unpack */
				if (again &&
				    frame_pack(again, FRAME_MAX_LIMIT, &buf2, &len2) == 0) {
					if (len2 != len || memcmp(buf, buf2, len))
						abort();
					free(buf2);
				}
				frame_free(again);
				free(buf);
			}
			frame_free(m);
		}
		off += (size_t)n;
	}
	return 0;
}
