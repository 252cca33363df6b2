/*
 * text.h: checks of text that people give tokend and that it shows again
 * (listings, events, terminals, logs). One function per kind of text, so
 * that every module refuses the same things with the same sentence.
 */
#ifndef TK_TEXT_H
#define TK_TEXT_H

#include "tk.h"

/* A name (of an operator token now; clients, apps and connections later):
 * 1 to max_bytes bytes of well-formed UTF-8 without control characters
 * (U+0000..U+001F, U+007F, U+0080..U+009F), bidirectional controls
 * (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) or line and
 * paragraph separators (U+2028, U+2029): what could make it display as
 * something else, or move a terminal's cursor. Otherwise TK_EINVAL, code
 * "invalid_field", e->field = field, a sentence naming the code point and
 * its character position (never the name itself). */
tk_rc tk_text_check_name(const char *field, const char *s, size_t max_bytes, struct tk_err *e);

#endif
