-- Accept a chunk's output of this generation: record it as the committed generation,
-- count it for the lease's pool. A repeat of an accepted completion (same generation)
-- is a no-op returning 0; any other generation or state is refused (STALE).
-- KEYS: chunks, leases, done, counts, pool completions    ARGV: chunk id, generation
-- -> 1 accepted now, 0 already accepted
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('NOCHUNK ' .. ARGV[1]) end
local c = cjson.decode(raw)
local gen = tonumber(ARGV[2])
if c.state == 'done' and c.committed == gen then return 0 end
if c.state ~= 'leased' or c.gen ~= gen then
  return redis.error_reply('STALE ' .. ARGV[1] .. ' generation ' .. gen .. ' (now ' .. c.state .. ' at generation ' .. c.gen .. ')')
end
c.state = 'done'
c.committed = gen
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], gen)
redis.call('HINCRBY', KEYS[4], 'leased', -1)
redis.call('HINCRBY', KEYS[4], 'done', 1)
redis.call('HINCRBY', KEYS[5], c.pool, 1)
return 1
