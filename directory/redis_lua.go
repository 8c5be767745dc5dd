package directory

import "github.com/redis/go-redis/v9"

// The Redis directory's scripts. Each state change and the events telling
// of it are one script, so they are atomic: a node dying between the two
// cannot leave a session closed without its session.closed, and two
// nodes reaping the same dead node cannot both emit it (scripts run one
// at a time). Every key is under the same hash tag as the webhook queues,
// so a Redis Cluster keeps them in one slot; KEYS[1] (the generation) is
// there for routing, and the scripts derive the other keys from ARGV
// (hence the probe that opens each script: see the package doc).

// luaHead opens every script but genScript: the key base (ARGV[1]), then
// the probe that stops a script before any write while its slot migrates
// (see the package doc).
const luaHead = `
local B = ARGV[1]
-- Redis Cluster: only KEYS[1] is declared, and while the slot migrates
-- the keys below may be on either node; a script failing half-way keeps
-- its first writes (no rollback). Two keys that never exist make it fail
-- before any write instead: the migrating node refuses a missing key
-- (ASK), the importing one several (TRYAGAIN). Go retries (slotMoving).
redis.call('EXISTS', B .. 'probe:1', B .. 'probe:2')
`

// luaCommon binds the ARGV every writing script shares and defines its
// helpers:
//
//	ARGV[1] key base, ARGV[2] the generation the caller knows,
//	ARGV[3] queue key without its partition number, ARGV[4] wake channel,
//	ARGV[5] partitions, ARGV[6] "1" to enqueue events, ARGV[7] queue max
//	length (0: none), ARGV[8] event ids (32 hex digits each, concatenated),
//	ARGV[9] offline delay ms, ARGV[10] TTL ms, ARGV[11] this instance.
//
// Deadlines and event times come from Redis's TIME, so that nodes whose
// clocks disagree still agree on when a node expired or an offline is
// due.
const luaCommon = luaHead + `local T = redis.call('TIME')
local sec, usec = tonumber(T[1]), tonumber(T[2])
local nowms = sec * 1000 + math.floor(usec / 1000)
local floor = math.floor

-- RFC 3339 in UTC from Unix seconds (Howard Hinnant's civil_from_days).
local function stamp()
  local z = floor(sec / 86400) + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  local s = sec % 86400
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, floor(s / 3600), floor(s % 3600 / 60), s % 60, usec)
end
local NOW = stamp()

-- webhook.Partition: CRC-32 (IEEE) of the order key modulo partitions.
local function partition(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(c, string.byte(s, i))
    for _ = 1, 8 do
      if bit.band(c, 1) == 1 then
        c = bit.bxor(bit.rshift(c, 1), 0xEDB88320)
      else
        c = bit.rshift(c, 1)
      end
    end
  end
  c = bit.bnot(c)
  if c < 0 then c = c + 4294967296 end
  return c % tonumber(ARGV[5])
end

local EVENTS = ARGV[6] == '1'
local MAXQ = tonumber(ARGV[7])
local idpos = 1
local pushed, dropped = 0, 0

-- room: whether n more events can get an id.
local function room(n)
  return (not EVENTS) or (#ARGV[8] - idpos + 1) >= 32 * n
end

-- emit enqueues ev (only non-empty fields, as Go's omitempty) on its
-- order key's partition, unless the partition is full.
local function emit(ev)
  if not EVENTS then return end
  ev.id = string.sub(ARGV[8], idpos, idpos + 31)
  idpos = idpos + 32
  if #ev.id ~= 32 then
    -- The caller passed too few ids (a bug): a unique id all the same,
    -- rather than an error after the state changed (scripts do not roll
    -- back).
    ev.id = string.sub(redis.sha1hex(ARGV[8] .. sec .. usec .. idpos .. (ev.session or '') .. (ev.user or '')), 1, 32)
  end
  ev.time = NOW
  local key
  if ev.user then key = 'u:' .. ev.user else key = 's:' .. ev.session end
  local p = partition(key)
  local q = ARGV[3] .. p
  if MAXQ > 0 and redis.call('LLEN', q) >= MAXQ then
    dropped = dropped + 1
    return
  end
  redis.call('RPUSH', q, cjson.encode(ev))
  redis.call('PUBLISH', ARGV[4], tostring(p))
  pushed = pushed + 1
end

local FIELDS = {'service', 'user', 'transport', 'node', 'remote'}
local function sevent(typ, id, rec)
  local e = {type = typ, session = id}
  for _, f in ipairs(FIELDS) do
    local v = rec[f]
    if v and v ~= '' then e[f] = v end
  end
  return e
end

local function record(id)
  local a = redis.call('HGETALL', B .. 's:' .. id)
  if #a == 0 then return nil end
  local r = {}
  for i = 1, #a, 2 do r[a[i]] = a[i + 1] end
  return r
end

-- drop removes a session and emits its session.closed; the user's last
-- session schedules their offline (at once without a delay).
local function drop(id, rec, code, reason)
  redis.call('DEL', B .. 's:' .. id)
  redis.call('SREM', B .. 'n:' .. rec.inst, id)
  local e = sevent('session.closed', id, rec)
  if code ~= 0 then e.code = code end
  if reason ~= '' then e.reason = reason end
  emit(e)
  local u = rec.user
  if u and u ~= '' then
    local uk = B .. 'u:' .. u
    redis.call('SREM', uk, id)
    if redis.call('SCARD', uk) == 0 then
      local d = tonumber(ARGV[9])
      if d <= 0 then
        emit({type = 'user.offline', user = u})
      else
        redis.call('ZADD', B .. 'due', nowms + d, u)
      end
    end
  end
end

local function genok()
  return redis.call('GET', KEYS[1]) == ARGV[2]
end
`

// Script-specific ARGV starts at 12.
var (
	// addScript: ARGV[12..19] id, service, user, transport, node, remote,
	// opened ms (0: now), "1" to restore quietly, "2" to adopt (a record
	// another instance holds becomes this one's, quietly: the session
	// moved here). Returns {"ok", pushed, dropped, opened ms}, {"exists"}
	// or {"gen"}.
	addScript = redis.NewScript(luaCommon + `
if not genok() then return {'gen'} end
local id, inst = ARGV[12], ARGV[11]
local sk = B .. 's:' .. id
local cur = redis.call('HGET', sk, 'inst')
if cur then
  if cur == inst then return {'ok', 0, 0, tonumber(redis.call('HGET', sk, 'opened'))} end
  if ARGV[19] ~= '2' then return {'exists'} end
  redis.call('HSET', sk, 'transport', ARGV[15], 'node', ARGV[16], 'remote', ARGV[17], 'inst', inst)
  redis.call('SREM', B .. 'n:' .. cur, id)
  redis.call('SADD', B .. 'n:' .. inst, id)
  redis.call('ZADD', B .. 'nodes', 'GT', nowms + tonumber(ARGV[10]), inst)
  return {'ok', 0, 0, tonumber(redis.call('HGET', sk, 'opened'))}
end
local opened = tonumber(ARGV[18])
if opened <= 0 then opened = nowms end
local rec = {service = ARGV[13], user = ARGV[14], transport = ARGV[15], node = ARGV[16], remote = ARGV[17]}
redis.call('HSET', sk, 'service', rec.service, 'user', rec.user, 'transport', rec.transport,
  'node', rec.node, 'remote', rec.remote, 'inst', inst, 'opened', opened)
redis.call('SADD', B .. 'n:' .. inst, id)
-- Any write proves this instance alive: register it if it is not (a
-- first Add before the first refresh, or after a reaper removed it).
redis.call('ZADD', B .. 'nodes', 'GT', nowms + tonumber(ARGV[10]), inst)
local quiet = ARGV[19] == '1'
if not quiet then emit(sevent('session.opened', id, rec)) end
local u = rec.user
if u ~= '' then
  local uk = B .. 'u:' .. u
  local first = redis.call('SCARD', uk) == 0
  redis.call('SADD', uk, id)
  if first then
    -- Back inside the delay: they never went offline.
    local pending = redis.call('ZREM', B .. 'due', u) == 1
    if not pending and not quiet then emit(sevent('user.online', id, rec)) end
  end
end
return {'ok', pushed, dropped, opened}
`)

	// removeScript: ARGV[12..14] id, code, reason. Returns {"ok", pushed,
	// dropped} or {"gen"}. A session of another instance is left alone.
	removeScript = redis.NewScript(luaCommon + `
if not genok() then return {'gen'} end
local rec = record(ARGV[12])
if rec and rec.inst == ARGV[11] then
  drop(ARGV[12], rec, tonumber(ARGV[13]), ARGV[14])
end
return {'ok', pushed, dropped}
`)

	// refreshScript moves this instance's deadline to now + TTL and
	// reads (and clears) the mark a reaper leaves on an instance it
	// reaped. Returns {"ok", reaped 0/1, sessions held} or {"gen"}.
	refreshScript = redis.NewScript(luaCommon + `
if not genok() then return {'gen'} end
local inst = ARGV[11]
redis.call('ZADD', B .. 'nodes', nowms + tonumber(ARGV[10]), inst)
local r = redis.call('GETDEL', B .. 'r:' .. inst)
return {'ok', r and 1 or 0, redis.call('SCARD', B .. 'n:' .. inst)}
`)

	// reapScript: ARGV[12..14] session budget, the closing code and
	// reason. Closes up to budget sessions of instances whose deadline
	// passed, then emits the due offlines of users still without a
	// session, as far as its event ids go. Returns {"ok", pushed,
	// dropped, closed, offlines, more (1: work left)}. It checks no
	// generation: reaping is right in any.
	reapScript = redis.NewScript(luaCommon + `
local budget = tonumber(ARGV[12])
local code, reason = tonumber(ARGV[13]), ARGV[14]
local closed, offline, more = 0, 0, 0
local nk = B .. 'nodes'
local dead = redis.call('ZRANGEBYSCORE', nk, '-inf', '(' .. nowms, 'LIMIT', 0, 16)
for _, inst in ipairs(dead) do
  local setk = B .. 'n:' .. inst
  local ids = {}
  if closed < budget then ids = redis.call('SRANDMEMBER', setk, budget - closed) end
  for _, id in ipairs(ids) do
    if not room(2) then more = 1 break end
    local rec = record(id)
    if rec then drop(id, rec, code, reason) else redis.call('SREM', setk, id) end
    closed = closed + 1
  end
  if #ids > 0 then
    -- Tell the instance, should it be alive after all (a long pause, a
    -- partition), that some of its sessions were closed as lost.
    redis.call('SET', B .. 'r:' .. inst, '1', 'PX', 86400000)
  end
  if redis.call('SCARD', setk) == 0 then
    redis.call('ZREM', nk, inst)
  else
    more = 1
  end
end
local dk = B .. 'due'
local users = redis.call('ZRANGEBYSCORE', dk, '-inf', nowms, 'LIMIT', 0, budget)
for _, u in ipairs(users) do
  if not room(1) then more = 1 break end
  redis.call('ZREM', dk, u)
  if redis.call('EXISTS', B .. 'u:' .. u) == 0 then
    emit({type = 'user.offline', user = u})
    offline = offline + 1
  end
end
if #users == budget then more = 1 end
return {'ok', pushed, dropped, closed, offline, more}
`)

	// genScript: KEYS[1] the generation, ARGV[1] a new one. Returns the
	// generation, writing ARGV[1] when Redis has none (it lost its data,
	// or this is the first node).
	genScript = redis.NewScript(`
local g = redis.call('GET', KEYS[1])
if g then return g end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

	// readScript: ARGV[1] key base, ARGV[2] "id" or "user", ARGV[3] the
	// id or user, ARGV[4] at most this many. Returns {id, fields} pairs
	// of live sessions: those whose instance is still within its
	// deadline (a dead node's sessions are not reported while they wait
	// for the reaper).
	readScript = redis.NewScript(luaHead + `local T = redis.call('TIME')
local nowms = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local deadlines = {}
local function live(id)
  local a = redis.call('HGETALL', B .. 's:' .. id)
  if #a == 0 then return nil end
  local inst
  for i = 1, #a, 2 do if a[i] == 'inst' then inst = a[i + 1] end end
  if not inst then return nil end
  if deadlines[inst] == nil then
    deadlines[inst] = tonumber(redis.call('ZSCORE', B .. 'nodes', inst) or 0)
  end
  if deadlines[inst] < nowms then return nil end
  return a
end
local out = {}
if ARGV[2] == 'id' then
  local a = live(ARGV[3])
  if a then out[1] = {ARGV[3], a} end
  return out
end
local max = tonumber(ARGV[4])
local seen = {}
local cursor = '0'
repeat
  local r = redis.call('SSCAN', B .. 'u:' .. ARGV[3], cursor, 'COUNT', 200)
  cursor = r[1]
  for _, id in ipairs(r[2]) do
    if #out >= max then break end
    if not seen[id] then
      seen[id] = true
      local a = live(id)
      if a then out[#out + 1] = {id, a} end
    end
  end
until cursor == '0' or #out >= max
return out
`)
)
