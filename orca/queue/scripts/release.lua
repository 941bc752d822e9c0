-- Give a lease back without charging an attempt (spot notice, drain, swap): the chunk
-- goes to the head of the queue so it is redone first. A lease of this generation that
-- already ended is a no-op returning the current state; a newer generation is STALE.
-- KEYS: chunks, leases, pending, counts    ARGV: chunk id, generation    -> new state
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('NOCHUNK ' .. ARGV[1]) end
local c = cjson.decode(raw)
local gen = tonumber(ARGV[2])
if c.gen ~= gen then
  return redis.error_reply('STALE ' .. ARGV[1] .. ' generation ' .. gen .. ' (now ' .. c.state .. ' at generation ' .. c.gen .. ')')
end
if c.state ~= 'leased' then return c.state end
c.state = 'pending'
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'leased', -1)
redis.call('HINCRBY', KEYS[4], 'pending', 1)
return 'pending'
