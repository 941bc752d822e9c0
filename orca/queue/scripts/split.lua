-- Partial commit: a worker that must stop holding a chunk keeps what it answered and hands the
-- rest back. The chunk becomes 'split' (out of the counts) and two children replace it: the
-- answered part, done at generation 1 with the output the worker already wrote, and the rest,
-- pending at the head of the queue, carrying the attempts charged so far (a split charges none).
-- Fenced like complete: refused (STALE) unless the chunk is leased under this generation; a
-- repeat of an accepted split (same generation and tag) is a no-op returning 0.
-- KEYS: chunks, leases, pending, done, counts, pool completions, splits
-- ARGV: chunk id, generation, tag, answered child id, rest child id    -> 1 accepted now, 0 already
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('NOCHUNK ' .. ARGV[1]) end
local c = cjson.decode(raw)
local gen = tonumber(ARGV[2])
if c.state == 'split' and c.gen == gen and c.split == ARGV[3] then return 0 end
if c.state ~= 'leased' or c.gen ~= gen then
  return redis.error_reply('STALE ' .. ARGV[1] .. ' generation ' .. gen .. ' (now ' .. c.state .. ' at generation ' .. c.gen .. ')')
end
c.state = 'split'
c.split = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[4], cjson.encode({state = 'done', attempts = c.attempts, gen = 1, owner = c.owner,
                                                   pool = c.pool, committed = 1, error = ''}))
redis.call('HSET', KEYS[4], ARGV[4], 1)
redis.call('HSET', KEYS[1], ARGV[5], cjson.encode({state = 'pending', attempts = c.attempts, gen = 0, owner = '',
                                                   pool = '', committed = 0, error = ''}))
redis.call('LPUSH', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[5], 'leased', -1)
redis.call('HINCRBY', KEYS[5], 'done', 1)
redis.call('HINCRBY', KEYS[5], 'pending', 1)
redis.call('HINCRBY', KEYS[5], 'total', 1)
redis.call('HINCRBY', KEYS[6], c.pool, 1)
return 1
