"""The Lua scripts behind job leases (model/serving/jobs.py uses them; docs/protocol.md says what they promise).

A lease is `omnifusion:lease:<entry id>` = the holder's token, with a TTL of the holder's visibility timeout.
Every script that writes on a job's behalf first checks the lease is still the caller's, in the same atomic
step as the write, so a worker that stalled past its lease and lost the job cannot write anything more for it.
(This is arq's "in progress" key, checked under WATCH/MULTI, done as scripts: one round trip for a whole batch.)
Lease keys are derived inside the scripts from entry ids, which is fine on one Redis; a Redis Cluster would
need every key passed in KEYS.
"""

# KEYS: lease keys. ARGV: token, lease ms, a prefix of tokens that may be taken over ("" = none).
# Takes every lease that is free, already ours, or held by a token with that prefix (an earlier process
# under our WORKER_NAME: it is dead, or it could not share our consumer name). -> 1-based indices taken.
ACQUIRE = """
local taken = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if (not holder) or holder == ARGV[1]
     or (ARGV[3] ~= '' and string.sub(holder, 1, #ARGV[3]) == ARGV[3]) then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    taken[#taken + 1] = i
  end
end
return taken
"""

# KEYS[1]: the job stream. ARGV: group, consumer, min idle ms, how many to take, token, lease ms, lease key
# prefix, how many idle entries to look at. Takes over entries idle at least `min idle` whose lease is gone:
# the lease and the claim change hands together, so a live holder's job is never claimed (nor its delivery
# count raised). -> {{entry id, {field, value, ...}, deliveries}, ...}
TAKE_OVER = """
local out = {}
local idle = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[8])
for _, p in ipairs(idle) do
  if #out >= tonumber(ARGV[4]) then break end
  local lease = ARGV[7] .. p[1]
  if redis.call('SET', lease, ARGV[5], 'NX', 'PX', ARGV[6]) then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
    if claimed[1] then
      out[#out + 1] = {claimed[1][1], claimed[1][2], p[4] + 1}
    else  -- deleted from the stream meanwhile: nothing to run
      redis.call('DEL', lease)
    end
  end
end
return out
"""

# KEYS[1]: the job stream, KEYS[2..]: lease keys. ARGV: token, lease ms, group, consumer, then the entry ids
# of those leases. Extends our leases and resets the entries' idle time (XCLAIM JUSTID: not a delivery);
# one that is no longer ours is left alone. -> entry ids whose lease was lost.
RENEW = """
local lost = {}
for i = 2, #KEYS do
  local entry = ARGV[i + 3]
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('XCLAIM', KEYS[1], ARGV[3], ARGV[4], 0, entry, 'JUSTID')
  else
    lost[#lost + 1] = entry
  end
end
return lost
"""

# KEYS[1]: the job stream, KEYS[2..]: lease keys. ARGV: token, group, consumer, then the entry ids. Gives our
# leases up and makes the entries look long idle, so any worker's next scan takes them at once.
HAND_BACK = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[i + 2], 'IDLE', 1000000000, 'JUSTID')
  end
end
return 0
"""

# Events travel in ARGV as: number of events, then per event its number of fields and the fields
# (name, value, ...). `add_events` reads one such list starting at ARGV[a] and returns the next index.
_EVENTS = """
local function add_events(stream, a, write)
  local n = tonumber(ARGV[a]); a = a + 1
  for _ = 1, n do
    local m = tonumber(ARGV[a]); a = a + 1
    if write then redis.call('XADD', stream, '*', unpack(ARGV, a, a + 2 * m - 1)) end
    a = a + 2 * m
  end
  return a
end
"""

# KEYS: pairs of (lease key, reply stream). ARGV: token, reply ttl, then per pair its events.
# Appends each job's events only if its lease is ours. -> 1-based pair numbers whose lease was lost.
EMIT = _EVENTS + """
local lost, a = {}, 3
for k = 1, #KEYS, 2 do
  local mine = redis.call('GET', KEYS[k]) == ARGV[1]
  a = add_events(KEYS[k + 1], a, mine)
  if mine then redis.call('EXPIRE', KEYS[k + 1], ARGV[2]) else lost[#lost + 1] = (k + 1) / 2 end
end
return lost
"""

# KEYS: lease, job stream, reply stream, dead-letter stream. ARGV: token, group, entry id, reply ttl,
# 1 if there is a reply stream, then the reply events, then the dead-letter fields as events (0 or 1 event).
# The end of a job: final events, dead letter, XACK and giving up the lease, all or nothing, and only by
# the lease holder. If the reply stream already ends in a final event (an earlier delivery of the same job
# finished it), nothing is written but the ack. -> 0 lease lost (nothing done), 1 finished, 2 already final.
FINISH = _EVENTS + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local final = false
if ARGV[5] == '1' then
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 5)) do
    local f = entry[2]
    for j = 1, #f, 2 do
      if f[j] == 'event' and (f[j + 1] == 'done' or f[j + 1] == 'error') then final = true end
    end
  end
end
if not final then
  local a = add_events(KEYS[3], 6, ARGV[5] == '1')
  if ARGV[5] == '1' then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
  local n = tonumber(ARGV[a])
  if n > 0 then
    local m = tonumber(ARGV[a + 1])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', unpack(ARGV, a + 2, a + 1 + 2 * m))
  end
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('DEL', KEYS[1])
if final then return 2 end
return 1
"""
