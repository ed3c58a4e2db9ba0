/*
 * calculator.c — the `calculator` tool (see calculator.h): a recursive-descent
 * parser that evaluates while it parses. Pure: no clock, no I/O, no globals.
 *
 * Only parentheses and '^' chains recurse, each capped at
 * CALCULATOR_MAX_DEPTH, and unary signs are folded in a loop; together with
 * the length cap this bounds stack use for any input a model can send.
 */
#include "agentd/calculator.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALC_ERR_BYTES 256 /* room for any message produced below */

struct calc_parser {
    const char *s;
    size_t len;      /* bytes in s, <= CALCULATOR_MAX_EXPR_LEN */
    size_t pos;      /* 0-based offset of the next unread byte */
    int paren_depth; /* currently open '(' */
    int power_depth; /* currently open '^' right operands */
    char *err;       /* may be NULL */
    size_t errlen;
    /* A literal is copied out before strtod() so strtod cannot read past the
     * span we validated (it would accept "0x1p3", "inf", ...). Kept here
     * rather than on the stack of each recursion level. */
    char numbuf[CALCULATOR_MAX_EXPR_LEN + 1];
};

static int calc_parse_expr(struct calc_parser *p, double *ret_value);
static int calc_parse_unary(struct calc_parser *p, double *ret_value);

__attribute__((format(printf, 3, 4))) static int calc_fail(struct calc_parser *p, int code,
                                                           const char *fmt, ...)
{
    if (p->err && p->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool calc_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool calc_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char calc_peek(const struct calc_parser *p)
{
    return p->pos < p->len ? p->s[p->pos] : '\0';
}

static void calc_skip_space(struct calc_parser *p)
{
    while (p->pos < p->len && calc_is_space(p->s[p->pos]))
        p->pos++;
}

/* Describes the byte at pos for an error message; control and non-ASCII
 * bytes are shown as hex so the message stays printable. */
static void calc_describe(const struct calc_parser *p, size_t pos, char *buf, size_t buflen)
{
    if (pos >= p->len) {
        snprintf(buf, buflen, "end of expression");
        return;
    }
    unsigned char c = (unsigned char)p->s[pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, buflen, "'%c'", c);
    else
        snprintf(buf, buflen, "byte 0x%02x", c);
}

static int calc_unexpected(struct calc_parser *p)
{
    char what[32];
    calc_describe(p, p->pos, what, sizeof(what));
    return calc_fail(p, -EINVAL, "syntax error at position %zu: unexpected %s", p->pos + 1, what);
}

/* Every operator result is checked so an overflow is reported where it
 * happened rather than as a meaningless "inf" at the end. */
static int calc_check(struct calc_parser *p, double v, char op, size_t op_pos)
{
    if (isfinite(v))
        return 0;
    if (isnan(v))
        return calc_fail(p, -ERANGE, "result of '%c' at position %zu is not a real number", op,
                         op_pos + 1);
    return calc_fail(p, -ERANGE, "overflow at position %zu: result of '%c' is too large",
                     op_pos + 1, op);
}

static size_t calc_skip_digits(struct calc_parser *p)
{
    size_t n = 0;
    while (p->pos < p->len && calc_is_digit(p->s[p->pos])) {
        p->pos++;
        n++;
    }
    return n;
}

static int calc_parse_number(struct calc_parser *p, double *ret_value)
{
    size_t start = p->pos;
    size_t digits = calc_skip_digits(p);

    if (calc_peek(p) == '.') {
        p->pos++;
        digits += calc_skip_digits(p);
    }
    if (digits == 0) {
        p->pos = start;
        return calc_unexpected(p);
    }
    if (calc_peek(p) == 'e' || calc_peek(p) == 'E') {
        p->pos++;
        if (calc_peek(p) == '+' || calc_peek(p) == '-')
            p->pos++;
        if (calc_skip_digits(p) == 0) {
            char what[32];
            calc_describe(p, p->pos, what, sizeof(what));
            return calc_fail(p, -EINVAL,
                             "syntax error at position %zu: expected exponent digits, found %s",
                             p->pos + 1, what);
        }
    }

    size_t n = p->pos - start;
    memcpy(p->numbuf, p->s + start, n);
    p->numbuf[n] = '\0';
    char *end = NULL;
    double v = strtod(p->numbuf, &end);
    /* Only reachable if the process switched LC_NUMERIC away from "C". */
    if (end != p->numbuf + n)
        return calc_fail(p, -EINVAL, "cannot read the number at position %zu", start + 1);
    /* Underflow to zero or a subnormal is fine; only infinity is not. */
    if (!isfinite(v))
        return calc_fail(p, -ERANGE, "number at position %zu is too large", start + 1);
    *ret_value = v;
    return 0;
}

static int calc_parse_primary(struct calc_parser *p, double *ret_value)
{
    calc_skip_space(p);
    char c = calc_peek(p);

    if (c == '(') {
        size_t open_pos = p->pos;
        if (p->paren_depth >= CALCULATOR_MAX_DEPTH)
            return calc_fail(p, -E2BIG,
                             "parentheses nested too deeply at position %zu (at most %d levels)",
                             open_pos + 1, CALCULATOR_MAX_DEPTH);
        p->paren_depth++;
        p->pos++;
        double v = 0.0;
        int r = calc_parse_expr(p, &v);
        if (r < 0)
            return r;
        calc_skip_space(p);
        if (calc_peek(p) != ')') {
            char what[32];
            calc_describe(p, p->pos, what, sizeof(what));
            return calc_fail(p, -EINVAL,
                             "syntax error at position %zu: expected ')' to close '(' at position "
                             "%zu, found %s",
                             p->pos + 1, open_pos + 1, what);
        }
        p->pos++;
        p->paren_depth--;
        *ret_value = v;
        return 0;
    }
    if (calc_is_digit(c) || c == '.')
        return calc_parse_number(p, ret_value);
    return calc_unexpected(p);
}

static int calc_parse_power(struct calc_parser *p, double *ret_value)
{
    double base = 0.0;
    int r = calc_parse_primary(p, &base);
    if (r < 0)
        return r;

    calc_skip_space(p);
    if (calc_peek(p) != '^') {
        *ret_value = base;
        return 0;
    }
    size_t op_pos = p->pos;
    if (p->power_depth >= CALCULATOR_MAX_DEPTH)
        return calc_fail(p, -E2BIG, "too many chained '^' at position %zu (at most %d)", op_pos + 1,
                         CALCULATOR_MAX_DEPTH);
    p->pos++;
    /* The right operand is a unary so that 2^-1 works; recursing here (not
     * looping) is what makes '^' right-associative. */
    p->power_depth++;
    double exponent = 0.0;
    r = calc_parse_unary(p, &exponent);
    p->power_depth--;
    if (r < 0)
        return r;

    double v = pow(base, exponent);
    r = calc_check(p, v, '^', op_pos);
    if (r < 0)
        return r;
    *ret_value = v;
    return 0;
}

static int calc_parse_unary(struct calc_parser *p, double *ret_value)
{
    bool negate = false;

    for (;;) {
        calc_skip_space(p);
        char c = calc_peek(p);
        if (c == '-')
            negate = !negate;
        else if (c != '+')
            break;
        p->pos++;
    }

    double v = 0.0;
    int r = calc_parse_power(p, &v);
    if (r < 0)
        return r;
    *ret_value = negate ? -v : v;
    return 0;
}

static int calc_parse_term(struct calc_parser *p, double *ret_value)
{
    double v = 0.0;
    int r = calc_parse_unary(p, &v);
    if (r < 0)
        return r;

    for (;;) {
        calc_skip_space(p);
        char op = calc_peek(p);
        if (op != '*' && op != '/' && op != '%')
            break;
        size_t op_pos = p->pos;
        p->pos++;
        double rhs = 0.0;
        r = calc_parse_unary(p, &rhs);
        if (r < 0)
            return r;
        if (op == '*') {
            v *= rhs;
        } else if (rhs == 0.0) {
            return calc_fail(p, -EDOM, "%s by zero at position %zu",
                             op == '/' ? "division" : "modulo", op_pos + 1);
        } else if (op == '/') {
            v /= rhs;
        } else {
            v = fmod(v, rhs);
        }
        r = calc_check(p, v, op, op_pos);
        if (r < 0)
            return r;
    }
    *ret_value = v;
    return 0;
}

static int calc_parse_expr(struct calc_parser *p, double *ret_value)
{
    double v = 0.0;
    int r = calc_parse_term(p, &v);
    if (r < 0)
        return r;

    for (;;) {
        calc_skip_space(p);
        char op = calc_peek(p);
        if (op != '+' && op != '-')
            break;
        size_t op_pos = p->pos;
        p->pos++;
        double rhs = 0.0;
        r = calc_parse_term(p, &rhs);
        if (r < 0)
            return r;
        v = op == '+' ? v + rhs : v - rhs;
        r = calc_check(p, v, op, op_pos);
        if (r < 0)
            return r;
    }
    *ret_value = v;
    return 0;
}

int calculator_eval(const char *expr, double *ret_value, char *err, size_t errlen)
{
    struct calc_parser p = {.s = expr, .err = err, .errlen = errlen};

    if (!expr)
        return calc_fail(&p, -EINVAL, "no expression given");
    p.len = strnlen(expr, CALCULATOR_MAX_EXPR_LEN + 1);
    if (p.len > CALCULATOR_MAX_EXPR_LEN)
        return calc_fail(&p, -E2BIG, "expression too long: more than %d characters",
                         CALCULATOR_MAX_EXPR_LEN);

    calc_skip_space(&p);
    if (p.pos == p.len)
        return calc_fail(&p, -EINVAL, "empty expression");

    double v = 0.0;
    int r = calc_parse_expr(&p, &v);
    if (r < 0)
        return r;
    calc_skip_space(&p);
    if (p.pos < p.len)
        return calc_unexpected(&p);

    *ret_value = v;
    return 0;
}

void calculator_format(double v, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return;
    /* Compare against powers of two, which are exact doubles: INT64_MAX
     * itself is not representable and would round up past the range. */
    if (v == 0.0) {
        snprintf(buf, buflen, "0"); /* also turns -0 into "0" */
    } else if (isfinite(v) && v == trunc(v) && v >= -0x1p63 && v < 0x1p63) {
        snprintf(buf, buflen, "%" PRId64, (int64_t)v);
    } else {
        snprintf(buf, buflen, "%.15g", v);
    }
}

int calculator_tool_run(const json_t *input, struct tool_result *ret)
{
    if (!json_is_object(input))
        return tool_result_setf(ret, TOOL_INPUT_ERROR,
                                "input must be an object with a string field \"expression\"");

    const json_t *jexpr = json_object_get(input, "expression");
    if (!jexpr)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "missing required field \"expression\"");
    if (!json_is_string(jexpr))
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "field \"expression\" must be a string");

    const char *expr = json_string_value(jexpr);
    if (strlen(expr) != json_string_length(jexpr))
        return tool_result_setf(ret, TOOL_INPUT_ERROR,
                                "field \"expression\" must not contain NUL characters");

    char err[CALC_ERR_BYTES];
    double v = 0.0;
    int r = calculator_eval(expr, &v, err, sizeof(err));
    if (r < 0)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "%s", err);

    /* Success implies the length cap held, so echoing expr is bounded. */
    size_t start = 0;
    size_t end = strlen(expr);
    while (start < end && calc_is_space(expr[start]))
        start++;
    while (end > start && calc_is_space(expr[end - 1]))
        end--;

    char num[32];
    calculator_format(v, num, sizeof(num));
    return tool_result_setf(ret, TOOL_OK, "%.*s = %s", (int)(end - start), expr + start, num);
}
