/*
 * redis_scripts.c — the Lua texts described in redis_scripts.h.
 */
#include "agentd/redis_scripts.h"

/* Shared prologue: now in ms (with microseconds as the fraction) from Redis TIME. */
#define REDIS_LUA_NOW                                                                              \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"

const char REDIS_SCRIPT_LIMIT_TAKE[] = REDIS_LUA_NOW
    "local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local max_wait, lease = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local h = redis.call('HMGET', KEYS[1], 'tat', 'pause', 'throttled', 'probe', 'gen')\n"
    "local tat, pause = tonumber(h[1]) or 0, tonumber(h[2]) or 0\n"
    "local probe, gen = tonumber(h[4]) or 0, tonumber(h[5]) or 0\n"
    "if pause > now then return {2, math.ceil(pause - now), 0} end\n"
    "local is_probe = false\n"
    "if h[3] == '1' then\n"
    "  if probe > now then return {3, 0, 0} end\n"
    "  is_probe = true\n"
    "end\n"
    "if burst < 1 then burst = 1 end\n"
    "local interval = 1000 / rate\n"
    "if tat < now then tat = now end\n"
    "local new = tat + interval\n"
    "local wait = math.ceil(new - burst * interval - now)\n"
    "if wait < 0 then wait = 0 end\n"
    "if (max_wait <= 0 and wait > 0) or (max_wait > 0 and wait > max_wait) then\n"
    "  return {1, wait, 0}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tat', string.format('%.17g', new))\n"
    "if is_probe then\n"
    "  gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
    "  redis.call('HSET', KEYS[1], 'probe', string.format('%.17g', now + wait + lease))\n"
    "end\n"
    "local keep = math.ceil(new - now) + 60000\n"
    "if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end\n"
    "if is_probe then return {4, wait, gen} end\n"
    "return {0, wait, 0}\n";

const char REDIS_SCRIPT_LIMIT_PAUSE[] = REDIS_LUA_NOW
    "local until_ms = now + tonumber(ARGV[1])\n"
    "local pause = tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0\n"
    "if pause > until_ms then until_ms = pause end\n"
    "redis.call('HSET', KEYS[1], 'pause', string.format('%.17g', until_ms), 'throttled', '1',\n"
    "           'probe', '0')\n"
    "redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
    "local keep = math.ceil(until_ms - now) + 60000\n"
    "if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end\n"
    "return math.ceil(until_ms - now)\n";

const char REDIS_SCRIPT_LIMIT_PROBE_DONE[] =
    "local gen = tonumber(redis.call('HGET', KEYS[1], 'gen')) or 0\n"
    "if gen ~= tonumber(ARGV[1]) or redis.call('HGET', KEYS[1], 'throttled') ~= '1' then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[2] == '1' then\n"
    "  redis.call('HSET', KEYS[1], 'throttled', '0', 'probe', '0')\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'probe', '0')\n"
    "end\n"
    "return 1\n";

const char REDIS_SCRIPT_REGISTRY_BEAT[] = REDIS_LUA_NOW
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], string.format('%.3f', now), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.3f', now - ttl))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2))\n"
    "return redis.call('ZCARD', KEYS[1])\n";
