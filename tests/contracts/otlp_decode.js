#!/usr/bin/env node
// otlp_decode.js — decodes OTLP/HTTP JSON trace export bodies (one per line) as
// opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest with the official
// opentelemetry-proto definitions: the protobufjs code generated from the .proto files of
// github.com/open-telemetry/opentelemetry-proto that @opentelemetry/otlp-transformer ships
// (build/src/generated/root.js). Run it through otlp-decode.sh, which installs the pinned
// packages and sets OTLP_PROTO_ROOT_JS.
//
// A body is accepted when, under the protobuf JSON mapping with OTLP's exceptions
// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
//  - traceId/spanId/parentSpanId are hex (16 / 8 bytes, not all zero; an empty parentSpanId
//    means none), not base64; they are turned into bytes before decoding;
//  - Type.fromObject builds the message and Type.verify accepts it (types, enum values, one
//    field per oneof);
//  - the message encodes to the protobuf wire format and decodes back;
//  - the JSON holds nothing the message lost: every key is a field of its message (lowerCamelCase
//    names only, no unknown field: fromObject alone ignores those) and every value equals its
//    canonical JSON form after the round trip (Type.toObject, 64-bit integers as decimal strings
//    or as numbers, enums as integers), so a value fromObject had to coerce (123 for a string,
//    "true" for a bool, -1 or 1.5 for a uint32, an enum name) is refused.
//
// Usage: otlp-decode.sh BODIES.jsonl | --self-test
// Exit 0 when every body decodes, 1 with the problems on stderr.
'use strict';
const fs = require('fs');

const root = require(process.env.OTLP_PROTO_ROOT_JS);
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const HEX_IDS = { traceId: 16, spanId: 8, parentSpanId: 8 }; // bytes; Span and Span.Link

// Copy of the JSON value with the hex ids as base64 (the protobuf JSON form of bytes).
function prepare(v, path, errs) {
    if (Array.isArray(v)) return v.map((x, i) => prepare(x, `${path}[${i}]`, errs));
    if (v === null || typeof v !== 'object') return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
        if (k in HEX_IDS && typeof x === 'string') {
            const n = HEX_IDS[k];
            if (k === 'parentSpanId' && x === '') {
                out[k] = x;
            } else if (!new RegExp(`^[0-9a-fA-F]{${2 * n}}$`).test(x)) {
                errs.push(`${path}.${k}: ${JSON.stringify(x).slice(0, 60)} is not ${n} bytes in hex`);
            } else if (/^0+$/.test(x)) {
                errs.push(`${path}.${k}: all zero, an invalid id`);
            } else {
                out[k] = Buffer.from(x, 'hex').toString('base64');
            }
            continue;
        }
        out[k] = prepare(x, `${path}.${k}`, errs);
    }
    return out;
}

function isField(msg, k) {
    const proto = Object.getPrototypeOf(msg);
    const d = Object.getOwnPropertyDescriptor(proto, k);
    return d !== undefined && 'value' in d && typeof d.value !== 'function';
}

function isLong(v) {
    return typeof v === 'number' || (v !== null && typeof v === 'object' && 'low' in v && 'high' in v);
}

// j: the prepared JSON value; c: its canonical JSON form after the round trip; m: the decoded value.
function compare(j, c, m, path, errs) {
    if (j === null) return; // the protobuf JSON mapping's "default value"
    if (Array.isArray(m)) {
        if (!Array.isArray(j) || !Array.isArray(c) || j.length !== c.length) {
            errs.push(`${path}: not the repeated field it should be`);
            return;
        }
        j.forEach((x, i) => compare(x, c[i], m[i], `${path}[${i}]`, errs));
        return;
    }
    if (m !== null && typeof m === 'object' && typeof m.constructor.decode === 'function') {
        const type = m.constructor.getTypeUrl('').slice(1);
        if (j === null || typeof j !== 'object' || Array.isArray(j)) {
            errs.push(`${path}: expected a ${type} object`);
            return;
        }
        for (const k of Object.keys(j)) {
            if (!isField(m, k)) errs.push(`${path}.${k}: no such field in ${type}`);
            else compare(j[k], c === undefined ? undefined : c[k], m[k], `${path}.${k}`, errs);
        }
        return;
    }
    if (typeof j === 'number' && typeof c === 'string' && isLong(m)) {
        if (!Number.isSafeInteger(j) || String(j) !== c)
            errs.push(`${path}: ${j} is not a 64-bit integer`);
        return;
    }
    if (j !== c) {
        errs.push(`${path}: ${JSON.stringify(j).slice(0, 60)} is not a valid value here ` +
            `(decodes as ${JSON.stringify(c)})`);
    }
}

// The problems of one body (a parsed JSON value), [] when it decodes.
function decode(body, where) {
    const errs = [];
    if (body === null || typeof body !== 'object' || Array.isArray(body))
        return [`${where}: not a JSON object`];
    const prepared = prepare(body, where, errs);
    if (errs.length) return errs;
    let msg;
    try {
        msg = Request.fromObject(prepared);
    } catch (e) {
        return [`${where}: ${e.message}`];
    }
    const why = Request.verify(msg);
    if (why) return [`${where}: ${why}`];
    const back = Request.decode(Request.encode(msg).finish());
    const canon = Request.toObject(back, { longs: String, enums: Number, bytes: String, arrays: true });
    compare(prepared, canon, back, where, errs);
    return errs;
}

function decodeLines(text) {
    const errs = [];
    let bodies = 0;
    text.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        bodies++;
        let body;
        try {
            body = JSON.parse(line);
        } catch (e) {
            errs.push(`body ${i + 1}: not JSON: ${e.message}`);
            return;
        }
        errs.push(...decode(body, `body${i + 1}`));
    });
    return { errs, bodies };
}

function selfTest() {
    const good = {
        resourceSpans: [{
            resource: { attributes: [{ key: 'service.name', value: { stringValue: 'agentd' } }] },
            scopeSpans: [{
                scope: { name: 'agentd', version: '1' },
                spans: [{
                    traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7',
                    parentSpanId: '00f067aa0ba902b8', flags: 769,
                    name: 'invoke_agent agentd', kind: 2, startTimeUnixNano: '1',
                    endTimeUnixNano: 2, status: { code: 0 },
                    events: [{ timeUnixNano: '1', name: 'agentd.attempt', attributes: [] }],
                    links: [{ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b9' }],
                    attributes: [
                        { key: 'n', value: { intValue: '3' } },
                        { key: 'd', value: { doubleValue: 0.5 } },
                        { key: 'b', value: { boolValue: true } },
                        { key: 'r', value: { arrayValue: { values: [{ stringValue: 'x' }] } } }],
                }],
            }],
        }],
    };
    const ok = decode(good, 'good');
    if (ok.length) throw new Error(`refused a valid body: ${ok.join('; ')}`);
    const span = (b) => b.resourceSpans[0].scopeSpans[0].spans[0];
    const broken = [
        ['name', 123], ['name', ['x']], ['kind', 'SPAN_KIND_SERVER'], ['kind', 9], ['kind', 1.5],
        ['startTimeUnixNano', '1.5'], ['startTimeUnixNano', 'x'], ['startTimeUnixNano', -1],
        ['droppedAttributesCount', -1], ['droppedAttributesCount', '2'],
        ['trace_id', '4bf92f3577b34da6a3ce929d0e0e4736'], ['parent', 'x'],
        ['traceId', 'S/kvNXezTaajzpKdDg5HNg=='], ['traceId', '0'.repeat(32)],
        ['spanId', '00f067aa0ba902'], ['status', { code: 7 }], ['status', { code: 1, reason: 'x' }],
        ['status', 'error'], ['events', { name: 'x' }], ['links', [{ traceId: 'x' }]],
        ['attributes', [{ key: 'n', value: { intValue: 'x' } }]],
        ['attributes', [{ key: 'n', value: { intValue: '1', stringValue: '1' } }]],
        ['attributes', [{ key: 'n', value: { boolValue: 'true' } }]],
        ['attributes', [{ key: 'n', value: { string_value: 'x' } }]],
        ['attributes', [{ key: 'n', value: { stringValue: 'x' }, type: 'string' }]],
    ];
    for (const [k, v] of broken) {
        const bad = JSON.parse(JSON.stringify(good));
        span(bad)[k] = v;
        if (decode(bad, 'bad').length === 0)
            throw new Error(`accepted ${k}=${JSON.stringify(v)}`);
    }
    const top = [{ resourceSpans: [{ scopeSpans: [], resources: {} }] }, { resourceSpans: {} },
        { resource_spans: [] }, [], 'x'];
    for (const b of top)
        if (decode(b, 'bad').length === 0) throw new Error(`accepted ${JSON.stringify(b)}`);
    console.log(`otlp_decode self-test: ok (${process.env.OTLP_PROTO_PINS})`);
}

function main(argv) {
    if (argv[0] === '--self-test') {
        selfTest();
        return 0;
    }
    if (argv.length !== 1) {
        console.error('usage: otlp-decode.sh BODIES.jsonl | --self-test');
        return 2;
    }
    const { errs, bodies } = decodeLines(fs.readFileSync(argv[0], 'utf8'));
    for (const e of errs.slice(0, 50)) console.error(`otlp_decode: ${e}`);
    if (!errs.length) {
        console.log(`otlp_decode: ${bodies} bodies decode as ExportTraceServiceRequest ` +
            `(${process.env.OTLP_PROTO_PINS})`);
    }
    return errs.length ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
