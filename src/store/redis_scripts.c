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

/* The minute now, and the window's first minute. */
#define REDIS_LUA_MINUTE                                                                           \
    "local m = math.floor(now / 60000)\n"                                                          \
    "local first = m - 59\n"

const char REDIS_SCRIPT_SPEND_RESERVE[] = REDIS_LUA_NOW REDIS_LUA_MINUTE
    "local lim = {tonumber(ARGV[1]), tonumber(ARGV[2])}\n"
    "local fields = {}\n"
    "for j = first, m do\n"
    "  fields[#fields + 1] = 'u' .. j\n"
    "  fields[#fields + 1] = 't' .. j\n"
    "end\n"
    "local v = redis.call('HMGET', KEYS[1], unpack(fields))\n"
    "local slot, total = {{}, {}}, {0, 0}\n"
    "for i = 0, 59 do\n"
    "  for k = 1, 2 do\n"
    "    local x = tonumber(v[2 * i + k]) or 0\n"
    "    slot[k][i] = x\n"
    "    total[k] = total[k] + x\n"
    "  end\n"
    "end\n"
    "local wait = 0\n"
    "for k = 1, 2 do\n"
    "  if lim[k] > 0 and total[k] >= lim[k] then\n"
    "    local rest, i = total[k], 0\n"
    "    while i < 59 do\n"
    "      rest = rest - slot[k][i]\n"
    "      if rest < lim[k] then break end\n"
    "      i = i + 1\n"
    "    end\n"
    "    local w = math.ceil((first + i + 60) * 60000 - now)\n"
    "    if w > wait then wait = w end\n"
    "  end\n"
    "end\n"
    "if wait > 0 then return {0, wait} end\n"
    "redis.call('HINCRBY', KEYS[1], 'u' .. m, ARGV[3])\n"
    "redis.call('HINCRBY', KEYS[1], 't' .. m, ARGV[4])\n"
    "if (tonumber(redis.call('HGET', KEYS[1], 'c')) or 0) < m then\n"
    "  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "    local j = tonumber(string.sub(f, 2))\n"
    "    if f ~= 'c' and j and j < first then redis.call('HDEL', KEYS[1], f) end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], 'c', m)\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], 3660000)\n"
    "return {1, m}\n";

const char REDIS_SCRIPT_SPEND_SETTLE[] = REDIS_LUA_NOW REDIS_LUA_MINUTE
    "local held = tonumber(ARGV[1])\n"
    "if held >= first and redis.call('HEXISTS', KEYS[1], 'u' .. held) == 1 then\n"
    "  redis.call('HINCRBY', KEYS[1], 'u' .. held, -tonumber(ARGV[2]))\n"
    "  redis.call('HINCRBY', KEYS[1], 't' .. held, -tonumber(ARGV[3]))\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[1], 'u' .. m, ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[1], 't' .. m, ARGV[5])\n"
    "redis.call('PEXPIRE', KEYS[1], 3660000)\n"
    "return 1\n";

const char REDIS_SCRIPT_IDEM_CLAIM[] = REDIS_LUA_NOW
    "local h = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body', 'lease', 'cp')\n"
    "local until_ms = string.format('%.17g', now + tonumber(ARGV[3]))\n"
    "if not h[1] then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'owner', ARGV[2],\n"
    "             'lease', until_ms)\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "  return {0}\n"
    "end\n"
    "if h[2] ~= ARGV[1] then return {2} end\n"
    "if h[1] == 'done' then return {3, tonumber(h[3]), h[4]} end\n"
    "local lease = tonumber(h[5]) or 0\n"
    "if lease > now then return {1, math.ceil(lease - now)} end\n"
    "redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease', until_ms)\n"
    "return {4, h[6] or ''}\n";

/* The key is owner's running claim. */
#define REDIS_LUA_IDEM_MINE                                                                        \
    "local h = redis.call('HMGET', KEYS[1], 'state', 'owner')\n"                                   \
    "if h[1] ~= 'running' or h[2] ~= ARGV[1] then return 0 end\n"

const char REDIS_SCRIPT_IDEM_RENEW[] = REDIS_LUA_NOW REDIS_LUA_IDEM_MINE
    "redis.call('HSET', KEYS[1], 'lease', string.format('%.17g', now + tonumber(ARGV[2])))\n"
    "return 1\n";

const char REDIS_SCRIPT_IDEM_CHECKPOINT[] = REDIS_LUA_NOW REDIS_LUA_IDEM_MINE
    "redis.call('HSET', KEYS[1], 'cp', ARGV[3],\n"
    "           'lease', string.format('%.17g', now + tonumber(ARGV[2])))\n"
    "return 1\n";

const char REDIS_SCRIPT_IDEM_RELEASE[] =
    REDIS_LUA_IDEM_MINE "redis.call('HSET', KEYS[1], 'lease', '0')\n"
                        "return 1\n";

const char REDIS_SCRIPT_IDEM_COMPLETE[] = REDIS_LUA_IDEM_MINE
    "redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3])\n"
    "redis.call('HDEL', KEYS[1], 'cp', 'lease')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

const char REDIS_SCRIPT_IDEM_ABANDON[] = REDIS_LUA_IDEM_MINE "redis.call('DEL', KEYS[1])\n"
                                                             "return 1\n";

const char REDIS_SCRIPT_CONV_ACQUIRE[] = "local cur = redis.call('GET', KEYS[2])\n"
                                         "if cur and cur ~= ARGV[1] then\n"
                                         "  local left = redis.call('PTTL', KEYS[2])\n"
                                         "  if left < 1 then left = 1 end\n"
                                         "  return {1, left}\n"
                                         "end\n"
                                         "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
                                         "local h = redis.call('HMGET', KEYS[1], 'v', 'h')\n"
                                         "return {0, tonumber(h[1]) or 0, h[2] or ''}\n";

/* The lock (KEYS[1]) is owner's. */
#define REDIS_LUA_LOCK_MINE "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"

const char REDIS_SCRIPT_CONV_RENEW[] =
    REDIS_LUA_LOCK_MINE "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                        "return 1\n";

const char REDIS_SCRIPT_CONV_COMMIT[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[2])\n"
    "if (tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) ~= tonumber(ARGV[2]) then\n"
    "  return -1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[2]) + 1, 'h', ARGV[3])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

const char REDIS_SCRIPT_CONV_RELEASE[] = REDIS_LUA_LOCK_MINE "redis.call('DEL', KEYS[1])\n"
                                                             "return 1\n";

const char REDIS_SCRIPT_REGISTRY_BEAT[] = REDIS_LUA_NOW
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], string.format('%.3f', now), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.3f', now - ttl))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2))\n"
    "return redis.call('ZCARD', KEYS[1])\n";
