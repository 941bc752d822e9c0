-- Pop up to n pending chunks, lease them to one worker and bump each generation.
-- A drained pool gets nothing. Expiry comes from Redis TIME, not the worker's clock.
-- KEYS: pending, chunks, leases, counts, draining
-- ARGV: worker id, pool, n, lease ms
-- -> {expires_ms, {chunk id, generation, attempts charged}, ...}
if redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1 then
  return {0}
end
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
local out = {expires}
for _ = 1, tonumber(ARGV[3]) do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local c = cjson.decode(redis.call('HGET', KEYS[2], id))
  c.state = 'leased'
  c.gen = c.gen + 1
  c.owner = ARGV[1]
  c.pool = ARGV[2]
  redis.call('HSET', KEYS[2], id, cjson.encode(c))
  redis.call('ZADD', KEYS[3], expires, id)
  out[#out + 1] = {id, c.gen, c.attempts}
end
local taken = #out - 1
if taken > 0 then
  redis.call('HINCRBY', KEYS[4], 'pending', -taken)
  redis.call('HINCRBY', KEYS[4], 'leased', taken)
end
return out
