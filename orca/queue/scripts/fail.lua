-- End a lease with an error and charge one attempt. Retryable failures requeue at the
-- tail until max_attempts are charged; a non-retryable one dead-letters at once.
-- A lease of this generation that already ended (reaped, released, failed) is a no-op
-- returning the current state; a newer generation refuses it (STALE).
-- KEYS: chunks, leases, pending, dead, counts
-- ARGV: chunk id, generation, error, retryable (1/0), max attempts    -> new state
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('NOCHUNK ' .. ARGV[1]) end
local c = cjson.decode(raw)
local gen = tonumber(ARGV[2])
if c.gen ~= gen then
  return redis.error_reply('STALE ' .. ARGV[1] .. ' generation ' .. gen .. ' (now ' .. c.state .. ' at generation ' .. c.gen .. ')')
end
if c.state ~= 'leased' then return c.state end
c.attempts = c.attempts + 1
c.error = ARGV[3]
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'leased', -1)
if ARGV[4] == '0' or c.attempts >= tonumber(ARGV[5]) then
  c.state = 'dead'
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
else
  c.state = 'pending'
  redis.call('RPUSH', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'pending', 1)
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return c.state
