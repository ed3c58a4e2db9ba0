/*
 * calculator.h — the `calculator` tool: evaluates an arithmetic expression
 * over doubles with a small hand-written parser (no eval, no shell, no I/O,
 * no clock), so a model-supplied string can never do more than arithmetic.
 *
 * Grammar (lowest to highest precedence):
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/' | '%') unary)*          left-associative; '%' is fmod
 *   unary   := ('+' | '-')* power                          so -2^2 = -(2^2) = -4
 *   power   := primary ('^' unary)?                        right-associative: 2^3^2 = 512
 *   primary := number | '(' expr ')'
 *   number  := digits ['.' [digits]] | '.' digits, then optional [eE][+-]digits
 *                                                          (e.g. 2, .5, 2., 1e3, 2.5E-4)
 * Whitespace (space, tab, CR, LF, VT, FF) may appear between tokens. Numbers
 * are parsed in the "C" locale format ('.' is the decimal point); hex,
 * "inf" and "nan" are not numbers here.
 *
 * Limits: at most CALCULATOR_MAX_EXPR_LEN bytes, at most CALCULATOR_MAX_DEPTH
 * nested parentheses and at most CALCULATOR_MAX_DEPTH chained '^'. Chains of
 * unary signs are folded in a loop, not by recursion, so with these limits the
 * parser's stack use is bounded for every input.
 *
 * Thread-safety: every function is reentrant (no global state, no logging);
 * safe from any thread at once. Memory: only calculator_tool_run() allocates,
 * the text of the caller's struct tool_result; err and buf are caller buffers.
 */
#ifndef AGENTD_CALCULATOR_H
#define AGENTD_CALCULATOR_H

#include <stddef.h>

#include <jansson.h>

#include "agentd/tool_result.h"

#define CALCULATOR_MAX_EXPR_LEN 1000 /* bytes, excluding the terminating NUL */
#define CALCULATOR_MAX_DEPTH    100  /* nested parentheses (and chained '^') */

/*
 * Evaluates the NUL-terminated expression `expr`.
 *
 * Returns 0 and writes the finite result to *ret_value, or a negative errno
 * (and leaves *ret_value untouched):
 *   -EINVAL  expr is NULL or empty, a syntax error, trailing garbage
 *   -EDOM    division by zero, modulo by zero
 *   -ERANGE  a number literal, an intermediate or the final result is not
 *            finite (overflow such as 10^400, or e.g. (-8)^(1/3))
 *   -E2BIG   expr longer than CALCULATOR_MAX_EXPR_LEN bytes, or nesting deeper
 *            than CALCULATOR_MAX_DEPTH
 * On failure, when err is non-NULL and errlen > 0, err receives a
 * NUL-terminated message (truncated to errlen) saying what went wrong and
 * where; positions are 1-based byte offsets into expr, e.g.
 * "syntax error at position 4: unexpected ')'". err is not written on success.
 */
int calculator_eval(const char *expr, double *ret_value, char *err, size_t errlen);

/*
 * Formats v for the model: integral values that fit in int64 print without a
 * decimal point ("345"), others with up to 15 significant digits
 * ("0.333333333333333", "1e+20"), "-0" prints as "0". The result is
 * NUL-terminated and truncated to buflen (32 bytes always suffice). Does
 * nothing when buf is NULL or buflen is 0.
 */
void calculator_format(double v, char *buf, size_t buflen);

/*
 * Tool glue. input is the tool_use "input" object (jansson json_t*, borrowed).
 * Not an object, missing/non-string "expression" (or one containing a NUL
 * byte) → TOOL_INPUT_ERROR; other members are ignored. Success: TOOL_OK
 * with text like "15 * 23 = 345" (the expression as given, without
 * surrounding whitespace). Any evaluation error → TOOL_INPUT_ERROR with the
 * message from calculator_eval().
 *
 * ret must be zero-initialised or hold a previous result (its text is
 * replaced); the caller frees it with tool_result_clear().
 * Returns 0, or -ENOMEM (ret unchanged).
 */
int calculator_tool_run(const json_t *input, struct tool_result *ret);

#endif
