-- Take back every lease a worker holds once its launcher reports it gone, without waiting
-- for the leases to expire. A crash may be the chunk's fault (a request that kills the
-- engine): charge = 1 charges an attempt, requeues at the tail or dead-letters once
-- max_attempts are charged, exactly as an expired lease. A preemption or teardown is not:
-- charge = 0 puts the chunk back at the head, like a release. The generation stays, so the
-- lost worker's commit is STALE (it can never complete).
-- KEYS: leases, chunks, pending, dead, counts
-- ARGV: worker id, max attempts, reason, charge (1|0)    -> reclaimed chunk ids
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local max_attempts = tonumber(ARGV[2])
local charge = ARGV[4] == '1'
local taken, requeued, dead = {}, 0, 0
for _, id in ipairs(ids) do
  local c = cjson.decode(redis.call('HGET', KEYS[2], id))
  if c.owner == ARGV[1] then
    if charge then c.attempts = c.attempts + 1 end
    c.error = 'worker ' .. c.owner .. ' (pool ' .. c.pool .. ') lost generation ' .. c.gen .. ': ' .. ARGV[3]
    redis.call('ZREM', KEYS[1], id)
    if charge and c.attempts >= max_attempts then
      c.state = 'dead'
      redis.call('HSET', KEYS[4], id, c.error)
      dead = dead + 1
    else
      c.state = 'pending'
      if charge then redis.call('RPUSH', KEYS[3], id) else redis.call('LPUSH', KEYS[3], id) end
      requeued = requeued + 1
    end
    redis.call('HSET', KEYS[2], id, cjson.encode(c))
    taken[#taken + 1] = id
  end
end
if #taken > 0 then
  redis.call('HINCRBY', KEYS[5], 'leased', -#taken)
  redis.call('HINCRBY', KEYS[5], 'pending', requeued)
  redis.call('HINCRBY', KEYS[5], 'dead', dead)
end
return taken
