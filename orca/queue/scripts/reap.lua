-- Take back leases whose expiry (Redis TIME) has passed, charging one attempt each:
-- requeue at the tail, or dead-letter once max_attempts are charged.
-- KEYS: leases, chunks, pending, dead, counts
-- ARGV: max attempts, most leases per call    -> reaped chunk ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local max_attempts = tonumber(ARGV[1])
local requeued, dead = 0, 0
for _, id in ipairs(ids) do
  local c = cjson.decode(redis.call('HGET', KEYS[2], id))
  c.attempts = c.attempts + 1
  c.error = 'lease expired: worker ' .. c.owner .. ' (pool ' .. c.pool .. ') stopped renewing generation ' .. c.gen
  redis.call('ZREM', KEYS[1], id)
  if c.attempts >= max_attempts then
    c.state = 'dead'
    redis.call('HSET', KEYS[4], id, c.error)
    dead = dead + 1
  else
    c.state = 'pending'
    redis.call('RPUSH', KEYS[3], id)
    requeued = requeued + 1
  end
  redis.call('HSET', KEYS[2], id, cjson.encode(c))
end
if #ids > 0 then
  redis.call('HINCRBY', KEYS[5], 'leased', -#ids)
  redis.call('HINCRBY', KEYS[5], 'pending', requeued)
  redis.call('HINCRBY', KEYS[5], 'dead', dead)
end
return ids
