/*
 * test_calculator.c — unit tests for the calculator tool: grammar
 * (precedence, associativity, unary signs, number forms), every error class
 * with its errno and message, the length and depth limits at their
 * boundaries, result formatting and the JSON tool glue.
 */
#include "agentd/calculator.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define SENTINEL 123456.0

/* Evaluates e and asserts success with exactly the expected value. */
#define ASSERT_EVAL(e, expected)                                                                   \
    do {                                                                                           \
        double v_ = SENTINEL;                                                                      \
        char err_[256] = "";                                                                       \
        int r_ = calculator_eval((e), &v_, err_, sizeof(err_));                                    \
        ck_assert_msg(r_ == 0, "'%s' failed: %d %s", (e), r_, err_);                               \
        ck_assert_msg(v_ == (expected), "'%s' = %.17g, expected %.17g", (e), v_,                   \
                      (double)(expected));                                                         \
    } while (0)

/* Evaluates e and asserts the given -errno, an untouched result, and a
 * message containing want. */
#define ASSERT_EVAL_FAILS(e, code, want)                                                           \
    do {                                                                                           \
        double v_ = SENTINEL;                                                                      \
        char err_[256] = "";                                                                       \
        int r_ = calculator_eval((e), &v_, err_, sizeof(err_));                                    \
        ck_assert_int_eq(r_, (code));                                                              \
        ck_assert(v_ == SENTINEL);                                                                 \
        ck_assert_msg(strstr(err_, (want)) != NULL, "message '%s' lacks '%s'", err_, (want));      \
    } while (0)

/* Returns a heap string of n copies of c followed by tail. */
static char *repeat(char c, size_t n, const char *tail)
{
    size_t tail_len = strlen(tail);
    char *s = malloc(n + tail_len + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    memcpy(s + n, tail, tail_len + 1);
    return s;
}

START_TEST(test_calculator_multiplies_15_by_23)
{
    ASSERT_EVAL("15 * 23", 345.0);
}
END_TEST

START_TEST(test_calculator_applies_operator_precedence)
{
    ASSERT_EVAL("2+3*4", 14.0);
    ASSERT_EVAL("(2+3)*4", 20.0);
    ASSERT_EVAL("2*3^2", 18.0);
    ASSERT_EVAL("1+7%4", 4.0);
    ASSERT_EVAL("2+12/4-1", 4.0);
}
END_TEST

START_TEST(test_calculator_binary_operators_are_left_associative)
{
    ASSERT_EVAL("10-4-3", 3.0);
    ASSERT_EVAL("100/10/5", 2.0);
    ASSERT_EVAL("7%3*2", 2.0); /* (7%3)*2, not 7%(3*2) = 1 */
    ASSERT_EVAL("8/2*4", 16.0);
}
END_TEST

START_TEST(test_calculator_power_is_right_associative)
{
    ASSERT_EVAL("2^3^2", 512.0);
    ASSERT_EVAL("(2^3)^2", 64.0);
    ASSERT_EVAL("2 ^ -1", 0.5);
    ASSERT_EVAL("2^-1^2", 0.5); /* 2^(-(1^2)) */
}
END_TEST

START_TEST(test_calculator_power_binds_tighter_than_unary_minus)
{
    ASSERT_EVAL("-2^2", -4.0);
    ASSERT_EVAL("(-2)^2", 4.0);
    ASSERT_EVAL("-2^3", -8.0);
}
END_TEST

START_TEST(test_calculator_accepts_unary_minus_and_plus)
{
    ASSERT_EVAL("-5", -5.0);
    ASSERT_EVAL("+5", 5.0);
    ASSERT_EVAL("--3", 3.0);
    ASSERT_EVAL("-+-3", 3.0);
    ASSERT_EVAL("2--3", 5.0);
    ASSERT_EVAL("2*-3", -6.0);
    ASSERT_EVAL("-(2+3)", -5.0);
}
END_TEST

START_TEST(test_calculator_reads_decimal_forms)
{
    ASSERT_EVAL(".5+.5", 1.0);
    ASSERT_EVAL("2.", 2.0);
    ASSERT_EVAL("3.25", 3.25);
    ASSERT_EVAL("007", 7.0);

    double v = 0;
    ck_assert_int_eq(calculator_eval("0.1+0.2", &v, NULL, 0), 0);
    ck_assert_double_eq_tol(v, 0.3, 1e-15);
}
END_TEST

START_TEST(test_calculator_reads_exponent_notation)
{
    ASSERT_EVAL("1e3", 1000.0);
    ASSERT_EVAL("2.5E-4", 2.5e-4);
    ASSERT_EVAL("1e+2", 100.0);
    ASSERT_EVAL(".5e1", 5.0);
    ASSERT_EVAL("1e-400", 0.0); /* underflow is not an error */
}
END_TEST

START_TEST(test_calculator_ignores_whitespace_between_tokens)
{
    ASSERT_EVAL(" \t15\n*\r23 ", 345.0);
    ASSERT_EVAL("( 1 + 2 ) ^ 2", 9.0);
}
END_TEST

START_TEST(test_calculator_modulo_is_fmod)
{
    ASSERT_EVAL("7.5 % 2", 1.5);
    ASSERT_EVAL("-7 % 3", -1.0);
    ASSERT_EVAL("7 % -3", 1.0);
}
END_TEST

START_TEST(test_calculator_rejects_division_by_zero)
{
    ASSERT_EVAL_FAILS("1/0", -EDOM, "division by zero at position 2");
    ASSERT_EVAL_FAILS("1 / (3 - 3)", -EDOM, "division by zero at position 3");
}
END_TEST

START_TEST(test_calculator_rejects_modulo_by_zero)
{
    ASSERT_EVAL_FAILS("5 % 0", -EDOM, "modulo by zero at position 3");
}
END_TEST

START_TEST(test_calculator_rejects_overflow)
{
    ASSERT_EVAL_FAILS("10^400", -ERANGE, "overflow at position 3");
    ASSERT_EVAL_FAILS("1e308*10", -ERANGE, "overflow at position 6");
    ASSERT_EVAL_FAILS("1e400", -ERANGE, "number at position 1 is too large");
    ASSERT_EVAL_FAILS("0^-1", -ERANGE, "overflow at position 2");
}
END_TEST

START_TEST(test_calculator_rejects_non_real_result)
{
    ASSERT_EVAL_FAILS("(-8)^(1/3)", -ERANGE, "not a real number");
}
END_TEST

START_TEST(test_calculator_rejects_empty_expression)
{
    ASSERT_EVAL_FAILS("", -EINVAL, "empty expression");
    ASSERT_EVAL_FAILS(" \t ", -EINVAL, "empty expression");
    ASSERT_EVAL_FAILS(NULL, -EINVAL, "no expression");
}
END_TEST

START_TEST(test_calculator_reports_syntax_error_position)
{
    ASSERT_EVAL_FAILS("(1+)", -EINVAL, "syntax error at position 4: unexpected ')'");
    ASSERT_EVAL_FAILS("1+", -EINVAL, "syntax error at position 3: unexpected end of expression");
    ASSERT_EVAL_FAILS("1 + @", -EINVAL, "syntax error at position 5: unexpected '@'");
    ASSERT_EVAL_FAILS("(1+2", -EINVAL,
                      "syntax error at position 5: expected ')' to close '(' at position 1");
    ASSERT_EVAL_FAILS("2e", -EINVAL, "position 3: expected exponent digits");
    ASSERT_EVAL_FAILS(".", -EINVAL, "syntax error at position 1: unexpected '.'");
    ASSERT_EVAL_FAILS("1+\x01", -EINVAL, "unexpected byte 0x01");
}
END_TEST

START_TEST(test_calculator_rejects_trailing_garbage)
{
    ASSERT_EVAL_FAILS("1+2)", -EINVAL, "syntax error at position 4: unexpected ')'");
    ASSERT_EVAL_FAILS("2 3", -EINVAL, "syntax error at position 3: unexpected '3'");
    ASSERT_EVAL_FAILS("1.2.3", -EINVAL, "unexpected '.'");
}
END_TEST

START_TEST(test_calculator_rejects_names_and_foreign_number_forms)
{
    ASSERT_EVAL_FAILS("inf", -EINVAL, "unexpected 'i'");
    ASSERT_EVAL_FAILS("nan", -EINVAL, "unexpected 'n'");
    ASSERT_EVAL_FAILS("0x10", -EINVAL, "unexpected 'x'");
    ASSERT_EVAL_FAILS("system(1)", -EINVAL, "unexpected 's'");
}
END_TEST

START_TEST(test_calculator_accepts_1000_characters)
{
    /* "1" + 499 x "+1" is 999 bytes; one trailing space makes 1000. */
    char expr[CALCULATOR_MAX_EXPR_LEN + 1];
    size_t n = 0;
    expr[n++] = '1';
    for (int i = 0; i < 499; i++) {
        expr[n++] = '+';
        expr[n++] = '1';
    }
    expr[n++] = ' ';
    expr[n] = '\0';
    ck_assert_uint_eq(strlen(expr), 1000);
    ASSERT_EVAL(expr, 500.0);
}
END_TEST

START_TEST(test_calculator_rejects_1001_characters)
{
    char *expr = repeat(' ', 1000, "1");
    ck_assert_uint_eq(strlen(expr), 1001);
    ASSERT_EVAL_FAILS(expr, -E2BIG, "expression too long");
    free(expr);
}
END_TEST

static char *nested_parens(int depth)
{
    char *s = malloc((size_t)depth * 2 + 2);
    ck_assert_ptr_nonnull(s);
    memset(s, '(', (size_t)depth);
    s[depth] = '7';
    memset(s + depth + 1, ')', (size_t)depth);
    s[2 * depth + 1] = '\0';
    return s;
}

START_TEST(test_calculator_accepts_100_nested_parentheses)
{
    char *expr = nested_parens(CALCULATOR_MAX_DEPTH);
    ASSERT_EVAL(expr, 7.0);
    free(expr);
}
END_TEST

START_TEST(test_calculator_rejects_101_nested_parentheses)
{
    char *expr = nested_parens(CALCULATOR_MAX_DEPTH + 1);
    ASSERT_EVAL_FAILS(expr, -E2BIG, "nested too deeply at position 101");
    free(expr);
}
END_TEST

START_TEST(test_calculator_depth_limit_holds_after_closed_parentheses)
{
    /* Depth counts open parentheses, not all of them: 150 sequential
     * groups are fine. */
    char expr[CALCULATOR_MAX_EXPR_LEN + 1] = "0";
    for (int i = 0; i < 150; i++)
        strcat(expr, "+(1)");
    ASSERT_EVAL(expr, 150.0);
}
END_TEST

static char *power_chain(int carets)
{
    char *s = malloc((size_t)carets * 2 + 2);
    ck_assert_ptr_nonnull(s);
    size_t n = 0;
    s[n++] = '1';
    for (int i = 0; i < carets; i++) {
        s[n++] = '^';
        s[n++] = '1';
    }
    s[n] = '\0';
    return s;
}

START_TEST(test_calculator_limits_chained_powers)
{
    char *ok = power_chain(CALCULATOR_MAX_DEPTH);
    ASSERT_EVAL(ok, 1.0);
    free(ok);

    char *too_many = power_chain(CALCULATOR_MAX_DEPTH + 1);
    ASSERT_EVAL_FAILS(too_many, -E2BIG, "too many chained '^' at position 202");
    free(too_many);
}
END_TEST

START_TEST(test_calculator_survives_deep_unary_minus_chain)
{
    char *odd = repeat('-', 999, "1");
    ASSERT_EVAL(odd, -1.0);
    free(odd);

    char *even = repeat('-', 998, "1");
    ASSERT_EVAL(even, 1.0);
    free(even);

    /* Signs in exponents alternate with '^', the other recursive path. */
    char expr[CALCULATOR_MAX_EXPR_LEN + 1] = "1";
    for (int i = 0; i < 99; i++)
        strcat(expr, "^----1");
    ASSERT_EVAL(expr, 1.0);
}
END_TEST

START_TEST(test_calculator_writes_nothing_on_success_and_tolerates_null_err)
{
    char err[16] = "untouched";
    double v = 0;
    ck_assert_int_eq(calculator_eval("1+1", &v, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "untouched");
    ck_assert_int_eq(calculator_eval("1/0", &v, NULL, 0), -EDOM);
    ck_assert(v == 2.0);
}
END_TEST

START_TEST(test_calculator_truncates_long_messages)
{
    char err[8];
    double v = 0;
    ck_assert_int_eq(calculator_eval("1/0", &v, err, sizeof(err)), -EDOM);
    ck_assert_str_eq(err, "divisio");
}
END_TEST

START_TEST(test_calculator_formats_integers_without_decimal_point)
{
    char buf[32];
    calculator_format(345.0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "345");
    calculator_format(-5.0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "-5");
    calculator_format(1e15, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1000000000000000");
    calculator_format(-0x1p63, buf, sizeof(buf));
    ck_assert_str_eq(buf, "-9223372036854775808");
}
END_TEST

START_TEST(test_calculator_formats_fractions_with_15_significant_digits)
{
    char buf[32];
    calculator_format(1.0 / 3.0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "0.333333333333333");
    calculator_format(2.5, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2.5");
    calculator_format(0.1 + 0.2, buf, sizeof(buf));
    ck_assert_str_eq(buf, "0.3");
}
END_TEST

START_TEST(test_calculator_formats_values_beyond_int64_in_exponent_form)
{
    char buf[32];
    calculator_format(0x1p63, buf, sizeof(buf));
    ck_assert_str_eq(buf, "9.22337203685478e+18");
    calculator_format(1e20, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1e+20");
}
END_TEST

START_TEST(test_calculator_formats_negative_zero_as_zero)
{
    char buf[32];
    calculator_format(-0.0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "0");
}
END_TEST

START_TEST(test_calculator_format_truncates_to_buffer)
{
    char buf[3] = "xx";
    calculator_format(12345.0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "12");
    calculator_format(1.0, NULL, 0); /* must not crash */
    calculator_format(1.0, buf, 0);
    ck_assert_str_eq(buf, "12");
}
END_TEST

/* Runs the tool on JSON text and returns the result (caller clears it). */
static struct tool_result run_tool(const char *json_text)
{
    json_error_t jerr;
    json_t *input = json_loads(json_text, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(input != NULL, "bad test JSON: %s", jerr.text);
    struct tool_result res = {0};
    ck_assert_int_eq(calculator_tool_run(input, &res), 0);
    ck_assert_ptr_nonnull(res.text);
    json_decref(input);
    return res;
}

START_TEST(test_calculator_tool_returns_expression_and_result)
{
    struct tool_result res = run_tool("{\"expression\": \"15 * 23\"}");
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "15 * 23 = 345");
    tool_result_clear(&res);

    res = run_tool("{\"expression\": \"  1/3 \\n\"}");
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "1/3 = 0.333333333333333");
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_calculator_tool_rejects_missing_expression)
{
    struct tool_result res = run_tool("{\"expr\": \"1+1\"}");
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(res.text, "missing required field \"expression\"");
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_calculator_tool_rejects_non_string_expression)
{
    struct tool_result res = run_tool("{\"expression\": 42}");
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(res.text, "field \"expression\" must be a string");
    tool_result_clear(&res);

    res = run_tool("{\"expression\": \"1\\u00002\"}");
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_ptr_nonnull(strstr(res.text, "NUL"));
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_calculator_tool_rejects_non_object_input)
{
    struct tool_result res = run_tool("[\"1+1\"]");
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    tool_result_clear(&res);

    ck_assert_int_eq(calculator_tool_run(NULL, &res), 0);
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_calculator_tool_reports_evaluation_error_as_input_error)
{
    struct tool_result res = run_tool("{\"expression\": \"1/0\"}");
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(res.text, "division by zero at position 2");
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_calculator_tool_replaces_previous_result)
{
    json_t *input = json_pack("{s:s}", "expression", "2^10");
    ck_assert_ptr_nonnull(input);
    struct tool_result res = {0};
    ck_assert_int_eq(calculator_tool_run(input, &res), 0);
    ck_assert_int_eq(calculator_tool_run(input, &res), 0);
    ck_assert_str_eq(res.text, "2^10 = 1024");
    tool_result_clear(&res);
    json_decref(input);
}
END_TEST

static Suite *calculator_suite(void)
{
    Suite *s = suite_create("calculator");
    TCase *grammar = tcase_create("grammar");
    tcase_add_test(grammar, test_calculator_multiplies_15_by_23);
    tcase_add_test(grammar, test_calculator_applies_operator_precedence);
    tcase_add_test(grammar, test_calculator_binary_operators_are_left_associative);
    tcase_add_test(grammar, test_calculator_power_is_right_associative);
    tcase_add_test(grammar, test_calculator_power_binds_tighter_than_unary_minus);
    tcase_add_test(grammar, test_calculator_accepts_unary_minus_and_plus);
    tcase_add_test(grammar, test_calculator_reads_decimal_forms);
    tcase_add_test(grammar, test_calculator_reads_exponent_notation);
    tcase_add_test(grammar, test_calculator_ignores_whitespace_between_tokens);
    tcase_add_test(grammar, test_calculator_modulo_is_fmod);
    suite_add_tcase(s, grammar);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_calculator_rejects_division_by_zero);
    tcase_add_test(errors, test_calculator_rejects_modulo_by_zero);
    tcase_add_test(errors, test_calculator_rejects_overflow);
    tcase_add_test(errors, test_calculator_rejects_non_real_result);
    tcase_add_test(errors, test_calculator_rejects_empty_expression);
    tcase_add_test(errors, test_calculator_reports_syntax_error_position);
    tcase_add_test(errors, test_calculator_rejects_trailing_garbage);
    tcase_add_test(errors, test_calculator_rejects_names_and_foreign_number_forms);
    tcase_add_test(errors, test_calculator_writes_nothing_on_success_and_tolerates_null_err);
    tcase_add_test(errors, test_calculator_truncates_long_messages);
    suite_add_tcase(s, errors);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_calculator_accepts_1000_characters);
    tcase_add_test(limits, test_calculator_rejects_1001_characters);
    tcase_add_test(limits, test_calculator_accepts_100_nested_parentheses);
    tcase_add_test(limits, test_calculator_rejects_101_nested_parentheses);
    tcase_add_test(limits, test_calculator_depth_limit_holds_after_closed_parentheses);
    tcase_add_test(limits, test_calculator_limits_chained_powers);
    tcase_add_test(limits, test_calculator_survives_deep_unary_minus_chain);
    suite_add_tcase(s, limits);

    TCase *format = tcase_create("format");
    tcase_add_test(format, test_calculator_formats_integers_without_decimal_point);
    tcase_add_test(format, test_calculator_formats_fractions_with_15_significant_digits);
    tcase_add_test(format, test_calculator_formats_values_beyond_int64_in_exponent_form);
    tcase_add_test(format, test_calculator_formats_negative_zero_as_zero);
    tcase_add_test(format, test_calculator_format_truncates_to_buffer);
    suite_add_tcase(s, format);

    TCase *tool = tcase_create("tool");
    tcase_add_test(tool, test_calculator_tool_returns_expression_and_result);
    tcase_add_test(tool, test_calculator_tool_rejects_missing_expression);
    tcase_add_test(tool, test_calculator_tool_rejects_non_string_expression);
    tcase_add_test(tool, test_calculator_tool_rejects_non_object_input);
    tcase_add_test(tool, test_calculator_tool_reports_evaluation_error_as_input_error);
    tcase_add_test(tool, test_calculator_tool_replaces_previous_result);
    suite_add_tcase(s, tool);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(calculator_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
