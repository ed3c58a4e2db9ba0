/*
 * fuzz_calculator.c — libFuzzer target for the calculator tool, whose
 * expression is written by the model (so, indirectly, by whoever steers it):
 * calculator_eval() on the input as a C string, calculator_format() on what
 * it returns, and calculator_tool_run() on {"expression": <input>} as the
 * engine calls it. Checks the promises of include/agentd/calculator.h: the
 * documented error codes only, finite results, the output arguments left
 * alone on the paths that must not write them, and a formatted number that
 * reads back as the value.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/calculator.h"
#include "agentd/tool_result.h"
#include "fuzz_common.h"

/* The expression is a JSON string inside an LLM response, which the engine
 * reads up to 16 MiB (LLM_MAX_RESPONSE_BYTES in src/engine/run.c). */
#define FUZZ_EXPR_CAP ((size_t)16 * 1024 * 1024)

static void check_format(double v)
{
    char buf[32];
    memset(buf, 'X', sizeof(buf));
    calculator_format(v, buf, sizeof(buf));
    FUZZ_CHECK(fuzz_terminated(buf, sizeof(buf)));
    FUZZ_CHECK(buf[0] != '\0');
    char *end = NULL;
    double back = strtod(buf, &end);
    FUZZ_CHECK(end && *end == '\0');
    /* 15 significant digits: a relative error below 1e-14. */
    FUZZ_CHECK(back == v || fabs(back - v) <= 1e-14 * fabs(v));
}

static void check_tool_run(const uint8_t *data, size_t size, int eval_rc)
{
    /* The engine only ever sees strings jansson accepted, i.e. valid UTF-8. */
    json_t *input = json_pack("{s:s%}", "expression", (const char *)data, size);
    if (!input)
        return;
    struct tool_result res = {0};
    int rc = calculator_tool_run(input, &res);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(res.text != NULL);
        FUZZ_CHECK(fuzz_utf8_ok(res.text, strlen(res.text)));
        bool has_nul = memchr(data, '\0', size) != NULL;
        FUZZ_CHECK((res.kind == TOOL_OK) == (!has_nul && eval_rc == 0));
        FUZZ_CHECK(res.kind == TOOL_OK || res.kind == TOOL_INPUT_ERROR);
    }
    tool_result_clear(&res);
    json_decref(input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init_once();
    if (size > FUZZ_EXPR_CAP)
        return 0;
    char *expr = fuzz_cstr(data, size, size);
    if (!expr)
        return 0;

    const double sentinel = -12345.678;
    double v = sentinel;
    char err[128];
    memset(err, 'X', sizeof(err));
    int rc = calculator_eval(expr, &v, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EDOM || rc == -ERANGE || rc == -E2BIG);
    if (strlen(expr) > CALCULATOR_MAX_EXPR_LEN)
        FUZZ_CHECK(rc == -E2BIG);
    if (rc == 0) {
        FUZZ_CHECK(isfinite(v));
        FUZZ_CHECK(err[0] == 'X'); /* err is not written on success */
        check_format(v);
    } else {
        FUZZ_CHECK(v == sentinel);
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        FUZZ_CHECK(err[0] != '\0');
    }
    /* A tiny buffer must still come back terminated. */
    char small[5];
    rc = calculator_eval(expr, &v, small, sizeof(small));
    if (rc != 0)
        FUZZ_CHECK(fuzz_terminated(small, sizeof(small)));

    check_tool_run(data, size, rc);
    free(expr);
    return 0;
}
